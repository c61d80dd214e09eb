"""Live widgets for AsyncResults and Progress in a notebook.

:func:`register` (called by ``%load_ext agentnb``) hooks them into IPython's
display machinery: an :class:`~agentnb.AsyncResult` shown in a cell becomes a
:class:`ResultView`, a :class:`~agentnb.Progress` a :class:`ProgressView` (or,
for one result given alone, a :class:`CallStatusView`).
Their states come from the servers' pushes; the process's one ticker thread
(:data:`agentnb.TICKER`) redraws them a few times a second while any
of them is live, and each view leaves the ticker once all its results are final.
"""

from __future__ import annotations

import html
import logging
import time
import traceback
import weakref
from typing import Any

import ipywidgets as widgets

from agentnb import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, TICKER, AsyncResult, Progress
from kernel_ext import timeline_view

_LOGGER = logging.getLogger(__name__)

RESULT_CLASS = "agentnb-result"
PROGRESS_CLASS = "agentnb-progress"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PREVIEW_CHARS = 300
STATUS_COLOURS = {QUEUED: "#777", RUNNING: "#1565c0", DONE: "#2e7d32", FAILED: "#c62828", CANCELLED: "#ef6c00"}


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#777")
    return (f'<span style="background:{colour};color:white;border-radius:3px;padding:0 6px;'
            f'font-weight:bold">{html.escape(status)}</span>')


def _elapsed(times: dict[str, float], status: str) -> float | None:
    """Seconds from submission to the final state (or to now while the call runs)."""
    start = times.get("submitted")
    if start is None:
        return None
    end = times.get(status) if status in FINAL_STATES else time.time()
    return max(0.0, (end or time.time()) - start)


class ResultView:
    """One AsyncResult: status, agent.method, server (its name; the address in a tooltip),
    elapsed; then a preview of the value, or the error with its traceback in a collapsed section."""

    def __init__(self, result: AsyncResult) -> None:
        self.result = result
        self.header = widgets.HTML()
        self.outcome = widgets.HTML()
        self.traceback = widgets.HTML()
        self.details = widgets.Accordion(children=[self.traceback], selected_index=None)
        self.details.set_title(0, "Traceback")
        self.details.layout.display = "none"
        self.widget = widgets.VBox([self.header, self.outcome, self.details])
        self.widget.add_class(RESULT_CLASS)
        self._final = False
        if self.tick():
            TICKER.add(self)

    def tick(self) -> bool:
        """Redraw; False once the result is final and drawn as such."""
        status = self.result.status
        if status in FINAL_STATES and not self._final:
            self._final = True
            self._draw_outcome()  # before the header: its status says when the rest is drawn
        info = self.result.call_info
        call = f"{info.agent}.{info.method}()" if info.method else f"task {info.task_id}"
        elapsed = _elapsed(self.result.times, status)
        server = info.server or info.address
        parts = [_badge(status), f"<code>{html.escape(call)}</code>",
                 f'on <span title="{html.escape(info.address)}">{html.escape(server)}</span>']
        if elapsed is not None:
            parts.append(f"{elapsed:.1f} s")
        self.header.value = " ".join(parts)
        return not self._final

    def _draw_outcome(self) -> None:
        error = self.result.exception(timeout=0)
        if error is not None:
            self._draw_error(error)
            return
        text = repr(self.result.result(timeout=0))
        if len(text) > PREVIEW_CHARS:
            text = text[:PREVIEW_CHARS] + "…"
        self.outcome.value = f"<pre style='margin:0'>{html.escape(text)}</pre>"

    def _draw_error(self, exc: BaseException) -> None:
        self.outcome.value = f"<b>{html.escape(type(exc).__name__)}</b>: {html.escape(str(exc))}"
        self.traceback.value = f"<pre style='margin:0'>{html.escape(format_error(exc))}</pre>"
        self.details.layout.display = None


def format_error(exc: BaseException) -> str:
    """The agent's frames (the traceback ``exception()`` gives), the error and its notes, as
    IPython would show them in a cell (``Cell In[7], line 13``), in plain text."""
    try:
        from IPython.core.ultratb import VerboseTB

        return "\n".join(VerboseTB(theme_name="nocolor", include_vars=False).structured_traceback(
            type(exc), exc, exc.__traceback__, context=3))
    except Exception:  # another IPython: Python's own format
        return "".join(traceback.format_exception(exc))


class CallStatusView(ResultView):
    """One call's status alone (state, call, server, elapsed): what ``wait_interactive()``
    and ``agentnb.wait(res, show=True)`` show while they wait. The value, or the error, is
    theirs to show (the cell's value, or its traceback), so it is not drawn a second time."""

    def _draw_outcome(self) -> None:
        pass


class ProgressView:
    """Many AsyncResults as one bar, like tqdm's: ``42%``, the bar, then ``21/50 done``,
    the failed count (in red), elapsed time and rate. The bar turns red as soon as a call
    fails (orange for cancelled calls), and green once all are done without either."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.percent = widgets.HTML()
        self.bar = widgets.IntProgress(value=0, min=0, max=max(progress.total, 1))
        self.label = widgets.HTML()
        self.widget = widgets.HBox([self.percent, self.bar, self.label])
        self.widget.add_class(PROGRESS_CLASS)
        if self.tick():
            TICKER.add(self)

    def tick(self) -> bool:
        """Redraw; False once every result is final and drawn as such."""
        progress = self.progress
        final = progress.done()  # read first: a final draw must not miss the last result
        self.bar.value = progress.finished if progress.total else 1
        self.bar.bar_style = bar_style(progress, final)
        self.percent.value = f"{progress.percent}%"
        self.label.value = ", ".join(_coloured(kind, text) for kind, text in progress.summary_parts())
        return not final  # (the label last: its text says when the rest is drawn)


def bar_style(progress: Progress, final: bool) -> str:
    """The bar's colour: red once a call failed, orange once one was cancelled, green when all are done."""
    if progress.failed:
        return "danger"
    if progress.count(CANCELLED):
        return "warning"
    return "success" if final else ""


def _coloured(kind: str, text: str) -> str:
    colour = STATUS_COLOURS.get(kind) if kind in (FAILED, CANCELLED) else None
    text = html.escape(text)
    return f'<b style="color:{colour}">{text}</b>' if colour else text


# -- the display hooks --------------------------------------------------------------------------

# Progress objects already drawn, with the cell (execution count) that drew them:
# ``agentnb.progress(results)`` draws at once, and when it is also the cell's
# value the display hook must not draw a second bar.
_drawn: weakref.WeakKeyDictionary[Progress, int] = weakref.WeakKeyDictionary()


def _widget_bundle(widget: widgets.Widget, text: str) -> dict[str, Any]:
    bundle = widget._repr_mimebundle_()
    return {"text/plain": text, WIDGET_MIME: bundle[WIDGET_MIME]}


def result_bundle(result: AsyncResult) -> dict[str, Any] | None:
    """The mimebundle of an AsyncResult: its text repr and a live :class:`ResultView`."""
    try:
        return _widget_bundle(ResultView(result).widget, repr(result))
    except Exception:  # no widget then: IPython shows the text repr
        _LOGGER.exception("agentnb: cannot draw the widget of %r", result)
        return None


def display_progress(progress: Progress) -> None:
    """Show a live :class:`ProgressView` of ``progress`` (once per cell); for a
    :attr:`~agentnb.Progress.single` result, the :class:`CallStatusView` of its call."""
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    cell = getattr(shell, "execution_count", 0)
    if _drawn.get(progress) == cell:
        return
    _drawn[progress] = cell
    try:
        view = CallStatusView(progress.results[0]) if progress.single else ProgressView(progress)
        bundle = _widget_bundle(view.widget, repr(progress))
    except Exception:
        _LOGGER.exception("agentnb: cannot draw the progress widget")
        bundle = {"text/plain": repr(progress)}
    display(bundle, raw=True)


def register(shell: Any) -> None:
    """Draw AsyncResults and Progress objects shown in ``shell`` as live widgets."""
    formatters = shell.display_formatter
    formatters.mimebundle_formatter.for_type(AsyncResult, result_bundle)
    formatters.ipython_display_formatter.for_type(Progress, display_progress)
    timeline_view.register(shell)


def unregister(shell: Any) -> None:
    """Undo :func:`register`: AsyncResults and Progress objects are text again."""
    formatters = shell.display_formatter
    for formatter, cls in ((formatters.mimebundle_formatter, AsyncResult),
                           (formatters.ipython_display_formatter, Progress)):
        try:
            formatter.pop(cls)
        except KeyError:
            pass
    timeline_view.unregister(shell)
