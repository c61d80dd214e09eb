"""Live widgets for AsyncResults and Progress in a notebook.

:func:`register` (called by ``%load_ext agentnb``) hooks them into IPython's
display machinery: an :class:`~agentnb.AsyncResult` shown in a cell becomes a
:class:`ResultView`, a :class:`~agentnb.Progress` a :class:`ProgressView`.
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
    """One AsyncResult: status, agent.method, server, elapsed; then a preview of
    the value, or the error with its traceback in a collapsed section."""

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
        parts = [_badge(status), f"<code>{html.escape(call)}</code>", f"on {html.escape(info.address)}"]
        if elapsed is not None:
            parts.append(f"{elapsed:.1f} s")
        self.header.value = " ".join(parts)
        return not self._final

    def _draw_outcome(self) -> None:
        try:
            value = self.result.result(timeout=0)
        except Exception as exc:
            self._draw_error(exc)
            return
        text = repr(value)
        if len(text) > PREVIEW_CHARS:
            text = text[:PREVIEW_CHARS] + "…"
        self.outcome.value = f"<pre style='margin:0'>{html.escape(text)}</pre>"

    def _draw_error(self, exc: BaseException) -> None:
        # format_exception_only: the error and its notes (the remote traceback),
        # without the local frames of result() that re-raised it here.
        lines = traceback.format_exception_only(exc)
        self.outcome.value = f"<b>{html.escape(type(exc).__name__)}</b>: {html.escape(str(exc))}"
        self.traceback.value = f"<pre style='margin:0'>{html.escape(''.join(lines))}</pre>"
        self.details.layout.display = None


class ProgressView:
    """Many AsyncResults as one bar: ``done/total``, failed count, elapsed time, rate."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bar = widgets.IntProgress(value=0, min=0, max=max(progress.total, 1))
        self.label = widgets.HTML()
        self.widget = widgets.HBox([self.bar, self.label])
        self.widget.add_class(PROGRESS_CLASS)
        if self.tick():
            TICKER.add(self)

    def tick(self) -> bool:
        """Redraw; False once every result is final and drawn as such."""
        progress = self.progress
        final = progress.done()  # read first: a final draw must not miss the last result
        self.bar.value = progress.finished if progress.total else 1
        if final:
            self.bar.bar_style = "warning" if progress.failed or progress.count(CANCELLED) else "success"
        self.label.value = html.escape(progress.summary())  # last: the text says when the rest is drawn
        return not final


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
    """Show a live :class:`ProgressView` of ``progress`` (once per cell)."""
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    cell = getattr(shell, "execution_count", 0)
    if _drawn.get(progress) == cell:
        return
    _drawn[progress] = cell
    try:
        bundle = _widget_bundle(ProgressView(progress).widget, repr(progress))
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
