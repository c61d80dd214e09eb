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
scripts and terminals). A row with more calls than its width can show one by
one is drawn as counts per time slice instead, so that thousands of calls stay
readable and quick to draw.

This module is imported by ``import agentnb``: it imports nothing of grpc,
IPython or ipywidgets.
"""

from __future__ import annotations

import html
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from agentnb.progress import TICKER, _flatten, _has_printer, _is_result, _widget_shell
from agentnb.wire.states import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, STATES

if TYPE_CHECKING:
    from agentnb.rpc.async_result import AsyncResult

__all__ = ["STATE_COLOURS", "CallRecord", "Timeline", "timeline"]

# The colours of the states, as the notebook's result and progress widgets draw them.
STATE_COLOURS = {QUEUED: "#777", RUNNING: "#1565c0", DONE: "#2e7d32", FAILED: "#c62828", CANCELLED: "#ef6c00"}
# The character of each state in the text drawing. Where calls in several states share a cell,
# the state of most of those that ran wins, ties going to the first of TEXT_PRIORITY; calls that
# only waited (cancelled ones, then queued ones) show where nothing ran.
TEXT_CHARS = {QUEUED: ".", RUNNING: "=", DONE: "#", FAILED: "x", CANCELLED: "-"}
TEXT_PRIORITY = (FAILED, RUNNING, DONE)
# A cancelled call never ran: like a wait, it is drawn as a thin line (in its own colour).
THIN_STATES = (QUEUED, CANCELLED)
# The slices of a crowded row stack the calls that ran or ended in this order, bottom up.
STACK_ORDER = (RUNNING, DONE, CANCELLED, FAILED)

SVG_WIDTH = 800  # pixels
TEXT_WIDTH = 60  # character cells of the strip
MIN_BAR_PIXELS = 6  # a row with more calls than its width / this is drawn as counts per time slice
SLICE_PIXELS = 4  # the width of a time slice of a dense row
ROW_HEIGHT = 20
BAR_HEIGHT = 14
QUEUED_HEIGHT = 4  # waiting is a thin line under the bars of the calls that ran
MIN_STACK_PIXELS = 2  # each state present in a slice of a dense row gets at least this much height
HEADER_HEIGHT = 20
AXIS_HEIGHT = 22
LEGEND_HEIGHT = 20
# A display of a live timeline is redrawn when a call changed state, else this often (running bars grow).
REDRAW_INTERVAL = 1.0


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
            text += f" ({_short_type(self.error_type)})"
        text += f" {'in' if self.final else 'for'} {_seconds(self.duration(now))}"
        if self.started is not None:
            text += f" (waited {_seconds(self.started - self.queued)})"
        return text


def _short_type(name: str) -> str:
    return name.removeprefix("builtins.")


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _natural_key(name: str) -> list:
    """Sort key putting ``W2`` before ``W10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# -- the model --------------------------------------------------------------------------------


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

    def __init__(self, calls: AsyncResult | Iterable[AsyncResult] | Mapping[Any, AsyncResult]
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
                self._results: list[AsyncResult] = []
                self._records = items
                self._now = self._created  # a snapshot: open calls are drawn to when it was taken
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
            res.add_status_callback(lambda r, i=index: self._on_status(i, r))

    # -- following AsyncResults ------------------------------------------------------------------

    def _on_status(self, index: int, res: AsyncResult) -> None:
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

    def _record_of(self, res: AsyncResult) -> CallRecord:
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
        rows: dict[str, list[CallRecord]] = {}
        for record in sorted(self._current(), key=lambda r: r.queued):
            rows.setdefault(record.agent, []).append(record)
        return {name: rows[name] for name in sorted(rows, key=_natural_key)}

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
        return _span(self._current(), self.now())

    def dense_rows(self, width: int = SVG_WIDTH) -> list[str]:
        """The agents whose rows :meth:`svg` of that ``width`` draws as counts per time slice."""
        plot = _plot_width(width, self._current())
        return [name for name, calls in self.rows.items() if len(calls) > plot / MIN_BAR_PIXELS]

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
        start, end = _span(records, self.now())
        text = (f"{len(records)} call{'s' if len(records) != 1 else ''} on {agents} "
                f"agent{'s' if agents != 1 else ''}")
        if parts:
            text += ": " + ", ".join(parts)
        return f"{text}; {_seconds(end - start)}" if records else text

    def __repr__(self) -> str:
        return f"<Timeline {self.summary()}>"

    # -- drawings --------------------------------------------------------------------------------

    def text(self, width: int = TEXT_WIDTH) -> str:
        """The timeline as text: a summary, one line per agent with a strip of ``width`` cells
        and its counts, the time axis and the legend (``.`` queued, ``=`` running, ``#`` done,
        ``x`` failed, ``-`` cancelled)."""
        records, now = self._current(), self.now()
        lines = [f"Timeline: {self.summary()}"]
        if not records:
            return lines[0]
        start, end = _span(records, now)
        rows = _rows(records)
        label_width = max(len(name) for name in rows)
        for name, calls in rows.items():
            bins = _slice_counts(calls, start, end, width, now)
            strip = "".join(_cell(bins, i) for i in range(width))
            counts = Counter(record.state for record in calls)
            figures = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
            lines.append(f"{name.ljust(label_width)} |{strip}| {figures}")
        right = _seconds(end - start)
        lines.append(" " * (label_width + 2) + "0 s".ljust(max(width - len(right), 4)) + right)
        lines.append("  ".join(f"{TEXT_CHARS[state]} {state}" for state in STATES))
        return "\n".join(lines)

    def svg(self, width: int = SVG_WIDTH) -> str:
        """The timeline as an SVG document ``width`` pixels wide: agents down the side, a time
        axis, a legend, and a hover text (``<title>``) on each bar: the call, its state and
        how long it waited and ran. Crowded rows show stacked counts per time slice."""
        records, now = self._current(), self.now()
        return _draw_svg(records, now, width, self.summary(), live=not self.done())


def _error_type(res: AsyncResult) -> str:
    try:
        res.result(timeout=0)
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__qualname__}"
    return ""


# -- drawing helpers ----------------------------------------------------------------------------


def _span(records: list[CallRecord], now: float) -> tuple[float, float]:
    if not records:
        return now, now
    start = min(record.queued for record in records)
    end = max((record.ended if record.ended is not None else now) for record in records)
    return start, max(end, start + 1e-3)


def _rows(records: list[CallRecord]) -> dict[str, list[CallRecord]]:
    rows: dict[str, list[CallRecord]] = {}
    for record in records:
        rows.setdefault(record.agent, []).append(record)
    return {name: rows[name] for name in sorted(rows, key=_natural_key)}


def _slice_counts(calls: list[CallRecord], start: float, end: float, slices: int,
                  now: float) -> dict[str, list[int]]:
    """For each state, how many of ``calls`` are in it during each of ``slices`` equal time
    slices of ``start``-``end`` (one pass over the calls, with difference arrays)."""
    scale = slices / (end - start)
    last = slices - 1
    diffs = {state: [0] * (slices + 1) for state in STATES}
    for record in calls:
        for state, begin, finish in record.segments(now):
            first = min(last, max(0, int((begin - start) * scale)))
            stop = min(last, max(first, int((finish - start) * scale)))
            diff = diffs[state]
            diff[first] += 1
            diff[stop + 1] -= 1
    counts = {}
    for state, diff in diffs.items():
        running, column = 0, []
        for step in diff[:slices]:
            running += step
            column.append(running)
        counts[state] = column
    return counts


def _cell(bins: dict[str, list[int]], index: int) -> str:
    count, rank = max((bins[state][index], -rank) for rank, state in enumerate(TEXT_PRIORITY))
    if count:
        return TEXT_CHARS[TEXT_PRIORITY[-rank]]
    for state in (CANCELLED, QUEUED):
        if bins[state][index]:
            return TEXT_CHARS[state]
    return " "


def _label_width(records: list[CallRecord]) -> int:
    longest = max((len(record.agent) for record in records), default=4)
    return min(200, max(40, 7 * longest + 12))


def _plot_width(width: int, records: list[CallRecord]) -> int:
    return max(50, width - _label_width(records) - 10)


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f} s"


def _draw_svg(records: list[CallRecord], now: float, width: int, summary: str, live: bool) -> str:
    left = _label_width(records)
    plot = _plot_width(width, records)
    rows = _rows(records)
    start, end = _span(records, now)
    scale = plot / (end - start)
    height = HEADER_HEIGHT + ROW_HEIGHT * len(rows) + AXIS_HEIGHT + LEGEND_HEIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="agentnb-timeline" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<text x="2" y="13" font-weight="bold">{html.escape(summary)}{" (live)" if live else ""}</text>']
    dense_note = False
    for row, (name, calls) in enumerate(rows.items()):
        top = HEADER_HEIGHT + row * ROW_HEIGHT
        if row % 2:
            out.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{ROW_HEIGHT}" fill="#f4f4f4"/>')
        counts = Counter(record.state for record in calls)
        figures = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
        out.append(f'<text x="{left - 6}" y="{top + ROW_HEIGHT - 6}" text-anchor="end">{html.escape(name)}'
                   f'<title>{html.escape(name)}: {len(calls)} calls, {figures}</title></text>')
        bar_top = top + (ROW_HEIGHT - BAR_HEIGHT) / 2
        if len(calls) > plot / MIN_BAR_PIXELS:
            dense_note = True
            _draw_slices(out, name, calls, start, end, now, left, plot, bar_top)
        else:
            _draw_bars(out, calls, start, now, left, scale, bar_top)
    axis_top = HEADER_HEIGHT + ROW_HEIGHT * len(rows)
    _draw_axis(out, start, end, left, plot, axis_top)
    _draw_legend(out, axis_top + AXIS_HEIGHT + 12, dense_note)
    out.append("</svg>")
    return "".join(out)


def _draw_bars(out: list[str], calls: list[CallRecord], start: float, now: float, left: int, scale: float,
               bar_top: float) -> None:
    """One bar per call: the waits first (thin lines, as are cancelled calls), then the runs over
    them. The last part of a call's bar carries its hover text."""
    thin_top = bar_top + (BAR_HEIGHT - QUEUED_HEIGHT) / 2
    runs = []
    for record in calls:
        segments = record.segments(now)
        for index, (state, begin, finish) in enumerate(segments):
            x = left + (begin - start) * scale
            w = (finish - begin) * scale
            w = w - 1 if w > 3 else max(1.0, w)  # a gap between one call's bar and the next
            title = f"<title>{html.escape(record.describe(now))}</title>" if index == len(segments) - 1 else ""
            if state in THIN_STATES:
                out.append(f'<rect x="{x:.1f}" y="{thin_top:.1f}" width="{w:.1f}" height="{QUEUED_HEIGHT}" '
                           f'fill="{STATE_COLOURS[state]}" fill-opacity="0.6">{title}</rect>')
            else:
                runs.append(f'<rect x="{x:.1f}" y="{bar_top:.1f}" width="{w:.1f}" height="{BAR_HEIGHT}" '
                            f'fill="{STATE_COLOURS[state]}">{title}</rect>')
    out.extend(runs)


def _draw_slices(out: list[str], name: str, calls: list[CallRecord], start: float, end: float, now: float,
                 left: int, plot: int, bar_top: float) -> None:
    """A crowded row: per time slice, a thin line where calls waited (as for single bars) and a
    column stacking how many calls ran or ended there, by state; each slice's hover text counts them."""
    slices = max(1, plot // SLICE_PIXELS)
    counts = _slice_counts(calls, start, end, slices, now)
    slice_width = plot / slices
    slice_seconds = (end - start) / slices
    thin_top = bar_top + (BAR_HEIGHT - QUEUED_HEIGHT) / 2
    for i in range(slices):
        present = [(state, counts[state][i]) for state in STACK_ORDER if counts[state][i]]
        waiting = counts[QUEUED][i]
        if not present and not waiting:
            continue
        x = left + i * slice_width
        t0 = i * slice_seconds
        words = ", ".join(f"{n} {state}" for state, n in [(QUEUED, waiting), *present] if n)
        out.append(f'<g><title>{html.escape(name)}, {t0:.2f}-{t0 + slice_seconds:.2f} s: {words}</title>')
        # A hair wider than the slice: no seams between neighbours.
        if waiting:
            out.append(f'<rect x="{x:.1f}" y="{thin_top:.1f}" width="{slice_width + 0.4:.1f}" '
                       f'height="{QUEUED_HEIGHT}" fill="{STATE_COLOURS[QUEUED]}" fill-opacity="0.6"/>')
        total = sum(n for _, n in present)
        spare = BAR_HEIGHT - MIN_STACK_PIXELS * len(present)
        y = bar_top + BAR_HEIGHT
        for state, n in present:
            h = MIN_STACK_PIXELS + spare * n / total
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slice_width + 0.4:.1f}" height="{h:.1f}" '
                       f'fill="{STATE_COLOURS[state]}"/>')
        out.append("</g>")


def _draw_axis(out: list[str], start: float, end: float, left: int, plot: int, top: int) -> None:
    span = end - start
    step = _nice_step(span)
    out.append(f'<line x1="{left}" y1="{top + 2}" x2="{left + plot}" y2="{top + 2}" stroke="#999"/>')
    tick = 0.0
    while tick <= span + step * 1e-9:
        x = left + tick / span * plot
        out.append(f'<line x1="{x:.1f}" y1="{top + 2}" x2="{x:.1f}" y2="{top + 6}" stroke="#999"/>'
                   f'<text x="{x:.1f}" y="{top + 17}" text-anchor="middle" fill="#555">'
                   f'{_tick_label(tick, step)}</text>')
        tick += step


def _draw_legend(out: list[str], baseline: int, dense_note: bool) -> None:
    x = 2
    for state in STATES:
        if state in THIN_STATES:
            out.append(f'<rect x="{x}" y="{baseline - 6}" width="14" height="{QUEUED_HEIGHT}" '
                       f'fill="{STATE_COLOURS[state]}" fill-opacity="0.6"/>')
        else:
            out.append(f'<rect x="{x}" y="{baseline - 9}" width="14" height="10" fill="{STATE_COLOURS[state]}"/>')
        out.append(f'<text x="{x + 18}" y="{baseline}">{state}</text>')
        x += 18 + 7 * len(state) + 14
    if dense_note:
        out.append(f'<text x="{x}" y="{baseline}" fill="#555">crowded rows: calls per time slice, by state</text>')


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


def timeline(calls: AsyncResult | Iterable[AsyncResult] | Mapping[Any, AsyncResult] | Iterable[CallRecord],
             *, show: bool = True) -> Timeline:
    """Show a timeline of calls: one row per agent, one bar per call, live while they run.

    In a notebook (Jupyter kernel) it is a widget that redraws as the calls
    change state; elsewhere the text drawing is printed to stderr once every
    call is final (``print(tl.text())`` shows it at any time). Assign the
    result (``tl = agentnb.timeline(results)``): as a cell's value it would be
    shown a second time.

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
