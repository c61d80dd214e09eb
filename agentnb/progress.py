"""Watching many AsyncResults: ``agentnb.progress()`` and ``agentnb.wait()``.

A :class:`Progress` counts its results' states as their server pushes them
(through :meth:`AsyncResult.add_status_callback`, never by polling). It is
shown where the program runs: in a Jupyter kernel as a live widget (drawn by
``kernel_ext.widgets``, which registers the display formatters when
``%load_ext agentnb`` runs), elsewhere as a text progress line on stderr.

Every live display, widget or text, is redrawn by the one :data:`TICKER`
thread of the process, a few times a second so that elapsed times move; the
thread runs only while some display is live. This module imports nothing of
IPython or ipywidgets until it needs to.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from agentnb.wire.states import CANCELLED, FAILED, FINAL_STATES, RUNNING

if TYPE_CHECKING:
    from agentnb.rpc.async_result import AsyncResult


# The types of result this module watches. AsyncResult adds itself when its module is
# imported, so that this module (imported by ``import agentnb``) never loads the client.
_RESULT_TYPES: tuple[type, ...] = ()


def register_result_type(cls: type) -> None:
    """Have :func:`progress` and :func:`wait` take objects of ``cls`` as results."""
    global _RESULT_TYPES
    if cls not in _RESULT_TYPES:
        _RESULT_TYPES = (*_RESULT_TYPES, cls)


def _is_result(value: object) -> bool:
    return isinstance(value, _RESULT_TYPES)


TICK_INTERVAL = 0.25  # seconds between redraws of live displays
BAR_WIDTH = 20
# Without a terminal (a pipe, a log file), a changed line is written at most this often.
PIPE_LINE_INTERVAL = 1.0

__all__ = ["TICKER", "Progress", "Ticker", "display_live", "progress", "wait"]


# -- the shared ticker ----------------------------------------------------------------------


class LiveView(Protocol):
    """A display that the ticker redraws."""

    def tick(self) -> bool:
        """Redraw; return False once the display is final (it is then dropped)."""


class Ticker:
    """One background thread that redraws every live display a few times a second.

    It starts when a display is added and ends when none is left; a display
    leaves when its ``tick()`` returns False (all its results are final).
    """

    def __init__(self, interval: float = TICK_INTERVAL) -> None:
        self.interval = interval
        self._views: list[LiveView] = []
        self._lock = threading.Lock()
        self._draw_lock = threading.Lock()  # one redraw at a time, whichever thread draws
        self._thread: threading.Thread | None = None

    def add(self, view: LiveView) -> None:
        """Redraw ``view`` until it is final (starting the thread if needed)."""
        with self._lock:
            self._views.append(view)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentnb-ticker", daemon=True)
                self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the ticker thread is alive (some display is live)."""
        with self._lock:
            return self._thread is not None

    def live_views(self) -> int:
        """How many displays the ticker redraws."""
        with self._lock:
            return len(self._views)

    def tick_now(self) -> None:
        """Redraw every live display now, on the calling thread (e.g. when a wait ends)."""
        with self._draw_lock:  # views leave only under it: none is drawn after its last draw
            with self._lock:
                views = list(self._views)
            finished = [view for view in views if not self._draw(view)]
            with self._lock:
                self._views = [view for view in self._views if view not in finished]

    @staticmethod
    def _draw(view: LiveView) -> bool:
        try:
            return view.tick()
        except Exception:  # a broken display is dropped; the others go on
            import logging  # here: ``import agentnb`` (which imports this module) stays light

            logging.getLogger(__name__).exception("agentnb: a progress display failed and stops updating")
            return False

    def _run(self) -> None:
        while True:
            self.tick_now()
            with self._lock:
                if not self._views:
                    self._thread = None
                    return
            time.sleep(self.interval)


#: The process's one :class:`Ticker`: every live display (widget or text line) is redrawn by it.
TICKER = Ticker()


# -- counting states --------------------------------------------------------------------------


class Progress:
    """The aggregate state of many AsyncResults, kept up to date by their servers' pushes.

    Made by :func:`progress` (which also shows it). ``finished`` counts the
    results in a final state (done, failed or cancelled); ``failed`` and
    ``cancelled`` are among them.
    """

    def __init__(self, results: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]]) -> None:
        self._keys, self._results = _flatten(results)
        self._single = _is_result(results)
        self._lock = threading.Lock()
        self._states = [res.status for res in self._results]
        self._counts = Counter(self._states)
        self._finished = sum(1 for state in self._states if state in FINAL_STATES)
        self._all_final = threading.Event()
        submitted = [res.times.get("submitted") for res in self._results]
        self._started = min((t for t in submitted if t is not None), default=time.time())
        self._ended: float | None = None
        self._check_all_final()
        for index, res in enumerate(self._results):
            res.add_status_callback(functools.partial(self._on_status, index))

    def _on_status(self, index: int, res: AsyncResult[Any]) -> None:
        new = res.status
        with self._lock:
            old = self._states[index]
            if old == new or old in FINAL_STATES:
                return
            self._states[index] = new
            self._counts[old] -= 1
            self._counts[new] += 1
            if new in FINAL_STATES:
                self._finished += 1
                self._check_all_final()

    def _check_all_final(self) -> None:
        if self._finished == len(self._results):
            self._ended = time.time()
            self._all_final.set()

    # -- figures -------------------------------------------------------------------------------

    @property
    def results(self) -> list[AsyncResult[Any]]:
        """The results watched, in order."""
        return list(self._results)

    @property
    def total(self) -> int:
        return len(self._results)

    @property
    def single(self) -> bool:
        """Whether it watches one AsyncResult given alone (not in a list); it is then shown
        as that call's status, and :meth:`values` is its value."""
        return self._single

    @property
    def finished(self) -> int:
        """Results in a final state (done, failed or cancelled)."""
        return self._finished

    def count(self, state: str) -> int:
        """How many results are in ``state`` (``queued``, ``running``, ``done``, ``failed``, ``cancelled``)."""
        with self._lock:
            return self._counts[state]

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def percent(self) -> int:
        """The finished share, in whole percent (rounded down, as tqdm does, so 100 only when all are)."""
        return 100 * self._finished // self.total if self.total else 100

    @property
    def elapsed(self) -> float:
        """Seconds from the first call's submission until the last one finished (or now)."""
        end = self._ended if self._ended is not None else time.time()
        return max(0.0, end - self._started)

    @property
    def rate(self) -> float:
        """Results finished per second."""
        elapsed = self.elapsed
        return self._finished / elapsed if elapsed > 0 else 0.0

    def done(self) -> bool:
        """Whether every result is final."""
        return self._all_final.is_set()

    def summary_parts(self) -> list[tuple[str, str]]:
        """The parts of :meth:`summary`, each with what it counts: ``[("done", "25/50 done"),
        ("failed", "2 failed"), ("elapsed", "3.1 s"), ("rate", "8.0/s")]`` (a display colours them)."""
        with self._lock:
            counts = dict(self._counts)
        parts = [("done", f"{self._finished}/{self.total} done")]
        parts += [(state, f"{counts[state]} {state}") for state in (FAILED, CANCELLED, RUNNING) if counts.get(state)]
        parts.append(("elapsed", f"{self.elapsed:.1f} s"))
        if self.total > 1:
            parts.append(("rate", f"{self.rate:.1f}/s"))
        return parts

    def summary(self) -> str:
        """``25/50 done, 2 failed, 3.1 s, 8.0/s`` (and running, cancelled counts when there are some)."""
        return ", ".join(text for _, text in self.summary_parts())

    def bar(self, width: int = BAR_WIDTH) -> str:
        """`` 50%|##########..........|``: the finished share in percent and as a text bar, as tqdm shows it."""
        filled = width * self._finished // self.total if self.total else width
        return f"{self.percent:3d}%|" + "#" * filled + "." * (width - filled) + "|"

    def __repr__(self) -> str:
        return f"<Progress {self.summary()}>"

    # -- waiting ---------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every result is final; return whether they are (False after ``timeout`` s)."""
        return self._all_final.wait(timeout)

    def values(self, return_exceptions: bool = False) -> Any:
        """The results' values: a dict for a dict of results, else a list. Waits for them.

        Args:
            return_exceptions: put a failed call's exception in its place
                instead of raising it.
        Raises:
            Exception: the first failure, in the results' order (unless
                ``return_exceptions``).
        """
        __tracebackhide__ = True
        values = []
        for res in self._results:
            try:
                values.append(res.result())
            except Exception as exc:
                if not return_exceptions:
                    raise
                values.append(exc)
        return dict(zip(self._keys, values, strict=True)) if self._keys is not None else values


def as_results(results: Any) -> list[AsyncResult[Any]]:
    """The AsyncResults of ``results``: one, an iterable, a dict's values or a Progress's (checked)."""
    if isinstance(results, Progress):
        return results.results
    return _flatten(results)[1]


def _flatten(results: Any) -> tuple[list[Any] | None, list[AsyncResult[Any]]]:
    """The keys (for a mapping) and the AsyncResults of ``results``, checked."""
    if _is_result(results):
        return None, [results]
    if isinstance(results, Mapping):
        keys: list[Any] | None = list(results.keys())
        items = list(results.values())
    elif isinstance(results, Iterable) and not isinstance(results, (str, bytes)):
        keys, items = None, list(results)
    else:
        raise TypeError(f"expected AsyncResults (a list, a dict, any iterable), got {type(results).__name__}")
    for i, item in enumerate(items):
        if not _is_result(item):
            where = f"key {keys[i]!r}" if keys is not None else f"item {i}"
            raise TypeError(f"{where} is a {type(item).__name__!r} object, not an AsyncResult "
                            "(only @async_func calls on distributed agents return one)")
    return keys, items


# -- showing ---------------------------------------------------------------------------------


class TextProgressLine:
    """A progress line on a text stream: `` 50%|#####.....| 25/50 done, 2 failed, 3.1 s, 8.0/s``.

    On a terminal the line is rewritten in place; on a pipe or a file a new
    line is written when the counts change, at most once per
    :data:`PIPE_LINE_INTERVAL`. The last line ends with a newline.
    """

    def __init__(self, progress: Progress, stream: TextIO | None = None, label: str = "") -> None:
        self.progress = progress
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self._tty = _isatty(self.stream)
        self._last_counts: tuple[int, int] | None = None
        self._last_write = 0.0
        self._width = 0

    def line(self) -> str:
        prefix = f"{self.label}: " if self.label else ""
        return f"{prefix}{self.progress.bar()} {self.progress.summary()}"

    def tick(self) -> bool:
        final = self.progress.done()
        if self._tty:
            text = self.line()
            self._write("\r" + text.ljust(self._width) + ("\n" if final else ""))
            self._width = len(text)
            return not final
        counts = (self.progress.finished, self.progress.failed)
        due = time.monotonic() - self._last_write >= PIPE_LINE_INTERVAL
        if final or (counts != self._last_counts and due):
            self._write(self.line() + "\n")
            self._last_counts, self._last_write = counts, time.monotonic()
        return not final

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _widget_shell() -> Any:
    """The IPython kernel shell, if widgets can be shown there; else None.

    A kernel (ipykernel's ZMQInteractiveShell) with ipywidgets importable
    gets widgets; the agentnb extension, which draws them, is loaded if it
    is not yet. Terminal IPython and scripts get text.
    """
    ipython = sys.modules.get("IPython")  # not imported: not running under IPython (a script)
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    try:
        import ipywidgets  # noqa: F401
    except Exception:
        return None
    # The extension draws a Progress through IPython's display hook for it.
    formatter = shell.display_formatter.ipython_display_formatter
    if not _has_printer(formatter, Progress):
        shell.extension_manager.load_extension("agentnb")
    return shell if _has_printer(formatter, Progress) else None


def _has_printer(formatter: Any, cls: type) -> bool:
    try:
        formatter.lookup_by_type(cls)
    except KeyError:
        return False
    return True


def display_live(progress: Progress, label: str = "") -> None:
    """Show ``progress`` live: a widget in a kernel (the call's status for a
    :attr:`Progress.single` result, else a bar), else a text line on stderr."""
    if _widget_shell() is not None:
        from IPython.display import display

        display(progress)
        return
    if progress.single and not label:
        info = progress.results[0].call_info
        label = f"{info.agent}.{info.method}" if info.method else info.task_id
    TICKER.add(TextProgressLine(progress, label=label))


def progress(results: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]]) -> Progress:
    """Show one live progress bar for many AsyncResults, without waiting for them.

    In a notebook it is a widget (percentage, bar, done/total, failed count,
    elapsed time, rate) that fills as the results arrive and turns red as
    soon as a call fails; elsewhere a text line on stderr. One AsyncResult
    given alone is shown as its call's status (state, call, server, elapsed
    time). Failed calls are counted, never raised. Assign the returned object
    (``p = agentnb.progress(results)``): as a cell's value it would be shown
    a second time.

    Args:
        results: AsyncResults: a list, any iterable, or a dict (its values).
    Returns:
        The :class:`Progress`, for ``p.wait()``, ``p.values()`` and the counts.
    Raises:
        TypeError: ``results`` holds something that is not an AsyncResult.
    """
    tracker = Progress(results)
    display_live(tracker)
    return tracker


def wait(results: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]], *, show: bool = False,
         timeout: float | None = None, return_exceptions: bool = False) -> Any:
    """Wait for AsyncResults and return their values.

    Args:
        results: one AsyncResult (its value is returned), a dict of them (a
            dict of values is returned) or any other iterable (a list).
        show: display their progress while waiting (a widget in a notebook,
            a text line elsewhere), as :func:`progress` does; for one
            AsyncResult, its status: the value is what ``wait`` returns.
        timeout: seconds to wait for all of them; None waits as long as it takes.
        return_exceptions: return a failed call's exception in its place
            instead of raising it.
    Raises:
        TimeoutError: some results were not final within ``timeout``.
        Exception: the first failure in order (unless ``return_exceptions``).
    """
    __tracebackhide__ = True
    tracker = Progress(results)
    if show:
        display_live(tracker)
    finished = tracker.wait(timeout)
    TICKER.tick_now()  # live displays of these results (this one's, progress()'s) show the end at once
    if not finished:
        raise TimeoutError(f"only {tracker.finished} of {tracker.total} results were final after {timeout} s")
    values = tracker.values(return_exceptions=return_exceptions)
    return values[0] if tracker.single else values

