"""A picture of a run: ``agentnb.timeline()`` draws one row per agent, one bar per call.

A :class:`Timeline` is made from AsyncResults (a list, a dict, any iterable,
as :func:`agentnb.progress` takes) or from the :class:`CallRecord` list a
server keeps of its recent calls (:func:`agentnb.server_calls`). Each call is a
bar from when it was queued, through when it ran, to its end: done, failed or
cancelled. A timeline of AsyncResults is live: their servers' pushes mark it
changed, and the process's :data:`~agentnb.TICKER` redraws its display until
every call is final.

It draws itself as SVG (:meth:`Timeline.svg`; in a Jupyter kernel the agentnb
extension shows that in a widget) and as text (:meth:`Timeline.text`, for
scripts and terminals), with :mod:`agentnb.timeline_drawing`. A row with more
calls than its width can show one by one is drawn as counts per time slice
instead, so that thousands of calls stay readable and quick to draw.

This module is imported by ``import agentnb``: it imports nothing of grpc,
IPython or ipywidgets.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from agentnb.progress import TICKER, _flatten, _has_printer, _is_result, _widget_shell
from agentnb.timeline_drawing import (
    STATE_COLOURS,
    SVG_WIDTH,
    TEXT_WIDTH,
    crowded_rows,
    draw_svg,
    draw_text,
    rows_of,
    seconds,
    short_type,
    span,
)
from agentnb.wire.states import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, STATES

if TYPE_CHECKING:
    from agentnb.rpc.async_result import AsyncResult

__all__ = ["STATE_COLOURS", "CallRecord", "Timeline", "timeline"]


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallRecord:
    """One call, as a timeline draws it. Times are seconds since the epoch.

    Attributes:
        agent: the agent's name (its class name when it has none): the row.
        method: the method called (``__init__`` for the agent's creation).
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        queued: when the call was queued on its server (or submitted, when
            the server was not asked to report it).
        started: when it started running; None if it has not (or never will,
            or the server was not asked to report it).
        ended: when it ended; None while it is queued or running.
        error_type: a failed call's exception type.
        task_id: the call's task id (empty for a synchronous call).
        agent_id: the agent's id on its server.
        server: the name or address of its server.
    """

    agent: str
    method: str
    state: str
    queued: float
    started: float | None = None
    ended: float | None = None
    error_type: str = ""
    task_id: str = ""
    agent_id: str = ""
    server: str = ""

    @property
    def final(self) -> bool:
        """Whether the call has ended (done, failed or cancelled)."""
        return self.state in FINAL_STATES

    def duration(self, now: float | None = None) -> float:
        """Seconds from queued to its end (or to ``now`` while it is not final)."""
        end = self.ended if self.ended is not None else (now if now is not None else time.time())
        return max(0.0, end - self.queued)

    def segments(self, now: float) -> list[tuple[str, float, float]]:
        """The call's parts as ``(state, start, end)``: waiting (``queued``), then running, which
        takes the colour of the end state once the call is final; open parts end at ``now``."""
        end = self.ended if self.ended is not None else max(now, self.queued)
        if self.started is None:
            return [(self.state if self.final else QUEUED, self.queued, end)]
        ran = RUNNING if not self.final else self.state
        return [(QUEUED, self.queued, self.started), (ran, self.started, end)]

    def describe(self, now: float | None = None) -> str:
        """``W0.work: done in 0.52 s (waited 0.10 s)``, as a bar's hover text says it."""
        text = f"{self.agent}.{self.method}: {self.state}"
        if self.state == FAILED and self.error_type:
            text += f" ({short_type(self.error_type)})"
        text += f" {'in' if self.final else 'for'} {seconds(self.duration(now))}"
        if self.started is not None:
            text += f" (waited {seconds(self.started - self.queued)})"
        return text


class Timeline:
    """The calls of a run by agent: one row per agent (by name), a bar per call.

    Made by :func:`timeline` (which also shows it), or directly from
    AsyncResults (live: it follows their states as their servers push them)
    or from :class:`CallRecord` objects (a snapshot, e.g. of
    :func:`agentnb.server_calls`).

    Args:
        calls: AsyncResults (one, a list, a dict, any iterable) or CallRecords.
    Raises:
        TypeError: ``calls`` holds something else, or both kinds.
    """

    def __init__(self, calls: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]]
                 | Iterable[CallRecord]) -> None:
        self._lock = threading.Lock()
        self._created = time.time()
        self._all_final = threading.Event()
        self._version = 0
        items = list(calls.values()) if isinstance(calls, Mapping) else calls
        if isinstance(items, Iterable) and not _is_result(items) \
                and not isinstance(items, (str, bytes)):
            items = list(items)
            if items and isinstance(items[0], CallRecord):
                for i, item in enumerate(items):
                    if not isinstance(item, CallRecord):
                        raise TypeError(f"item {i} is a {type(item).__name__!r} object, not a CallRecord "
                                        "(a timeline is drawn from AsyncResults or from CallRecords)")
                self._results: list[AsyncResult[Any]] = []
                self._records = items
                self._now: float | None = self._created  # a snapshot: open calls are drawn to when it was taken
                self._all_final.set()
                return
        _, self._results = _flatten(items)
        self._now = None
        self._records = [self._record_of(res) for res in self._results]
        self._dirty: set[int] = set()
        self._final = [False] * len(self._results)
        self._final_count = 0
        if not self._results:
            self._all_final.set()
        for index, res in enumerate(self._results):
            res.add_status_callback(functools.partial(self._on_status, index))

    # -- following AsyncResults ------------------------------------------------------------------

    def _on_status(self, index: int, res: AsyncResult[Any]) -> None:
        """A pushed state change (on the thread that receives replies: kept quick)."""
        self._dirty.add(index)
        self._version += 1
        if res.status in FINAL_STATES:
            with self._lock:
                if self._final[index]:
                    return
                self._final[index] = True
                self._final_count += 1
                if self._final_count == len(self._results):
                    self._all_final.set()

    def _record_of(self, res: AsyncResult[Any]) -> CallRecord:
        times = res.times  # before the status: a final status then always finds its time, or uses now
        state = res.status
        info = res.call_info
        queued = times.get(QUEUED) or times.get("submitted") or self._created
        ended = times.get(state, time.time()) if state in FINAL_STATES else None
        error_type = _error_type(res) if state == FAILED else ""
        return CallRecord(info.agent or "?", info.method or "?", state, queued, times.get(RUNNING), ended,
                          error_type, info.task_id, server=info.address)

    def _current(self) -> list[CallRecord]:
        """The records, with those of the results whose state changed made again."""
        if self._results:
            with self._lock:
                while self._dirty:
                    index = self._dirty.pop()
                    self._records[index] = self._record_of(self._results[index])
        return list(self._records)

    # -- figures ---------------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        """Every call, in the order given."""
        return self._current()

    @property
    def rows(self) -> dict[str, list[CallRecord]]:
        """The calls by agent name (``W2`` before ``W10``), each row's in the order they were queued."""
        return rows_of(sorted(self._current(), key=lambda record: record.queued))

    @property
    def version(self) -> int:
        """A number that changes whenever a call of the timeline changes state."""
        return self._version

    def counts(self) -> dict[str, int]:
        """How many calls are in each state (every state, zeros included)."""
        counts = Counter(record.state for record in self._current())
        return {state: counts[state] for state in STATES}

    def now(self) -> float:
        """The time open bars are drawn to: now for a live timeline, when a snapshot was taken."""
        return self._now if self._now is not None else time.time()

    def span(self) -> tuple[float, float]:
        """The times of the first call's start and of the last call's end (or now)."""
        return span(self._current(), self.now())

    def dense_rows(self, width: int = SVG_WIDTH) -> list[str]:
        """The agents whose rows :meth:`svg` of that ``width`` draws as counts per time slice."""
        return crowded_rows(self._current(), width)

    def done(self) -> bool:
        """Whether every call is final."""
        return self._all_final.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every call is final; return whether they are (False after ``timeout`` s).

        Displays of the timeline then show the end at once.
        """
        finished = self._all_final.wait(timeout)
        if finished:
            TICKER.tick_now()
        return finished

    def summary(self) -> str:
        """``1000 calls on 10 agents: 990 done, 10 failed; 3.2 s``."""
        records = self._current()
        counts = Counter(record.state for record in records)
        agents = len({record.agent for record in records})
        parts = [f"{counts[state]} {state}" for state in (DONE, FAILED, CANCELLED, RUNNING, QUEUED)
                 if counts[state]]
        start, end = span(records, self.now())
        text = (f"{len(records)} call{'s' if len(records) != 1 else ''} on {agents} "
                f"agent{'s' if agents != 1 else ''}")
        if parts:
            text += ": " + ", ".join(parts)
        return f"{text}; {seconds(end - start)}" if records else text

    def __repr__(self) -> str:
        return f"<Timeline {self.summary()}>"

    # -- drawings --------------------------------------------------------------------------------

    def text(self, width: int = TEXT_WIDTH) -> str:
        """The timeline as text: a summary, one line per agent with a strip of ``width`` cells
        and its counts, the time axis and the legend (``.`` queued, ``=`` running, ``#`` done,
        ``x`` failed, ``-`` cancelled)."""
        return draw_text(self._current(), self.now(), width, self.summary())

    def svg(self, width: int = SVG_WIDTH) -> str:
        """The timeline as an SVG document ``width`` pixels wide: agents down the side, a time
        axis, a legend, and a hover text (``<title>``) on each bar: the call, its state and
        how long it waited and ran. Crowded rows show stacked counts per time slice."""
        records, now = self._current(), self.now()
        return draw_svg(records, now, width, self.summary(), live=not self.done())


def _error_type(res: AsyncResult[Any]) -> str:
    try:
        res.result(timeout=0)
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__qualname__}"
    return ""


# -- showing -----------------------------------------------------------------------------------


class TextTimeline:
    """Prints a timeline's text to a stream once every call is final (for the ticker)."""

    def __init__(self, timeline: Timeline, stream: TextIO | None = None) -> None:
        self.timeline = timeline
        self.stream = stream if stream is not None else sys.stderr

    def tick(self) -> bool:
        if not self.timeline.done():
            return True
        self.stream.write(self.timeline.text() + "\n")
        self.stream.flush()
        return False


def _show(line: Timeline) -> None:
    """A widget in a Jupyter kernel (drawn by the agentnb extension), else text on stderr when final."""
    shell = _widget_shell()
    if shell is not None and _has_printer(shell.display_formatter.ipython_display_formatter, Timeline):
        from IPython.display import display

        display(line)
        return
    view = TextTimeline(line)
    if view.tick():
        TICKER.add(view)


def timeline(calls: AsyncResult[Any] | Iterable[AsyncResult[Any]] | Mapping[Any, AsyncResult[Any]]
             | Iterable[CallRecord],
             *, show: bool = True) -> Timeline:
    """Show a timeline of calls: one row per agent, one bar per call, live while they run.

    In a notebook (Jupyter kernel) it is a widget that redraws as the calls
    change state; elsewhere the text drawing is printed to stderr once every
    call is final (``print(tl.text())`` shows it at any time).

    Args:
        calls: AsyncResults (one, a list, a dict, any iterable), or the
            :class:`CallRecord` list of :func:`agentnb.server_calls` (a server's
            recent calls).
        show: display it; False only builds it.
    Returns:
        The :class:`Timeline`: ``.rows``, ``.counts()``, ``.wait()``, ``.text()``, ``.svg()``.
    Raises:
        TypeError: ``calls`` holds something that is neither an AsyncResult nor a CallRecord.
    """
    line = Timeline(calls)
    if show:
        _show(line)
    return line
