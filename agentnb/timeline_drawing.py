"""Drawing a timeline's calls: as SVG (agents down the side, a time axis, a legend, a hover
text per bar) and as text (a strip of character cells per agent).

Functions of a list of :class:`agentnb.timeline.CallRecord` and the time open calls are
drawn to; :class:`agentnb.Timeline` calls them. A row with more calls than its width can
show one by one is drawn as counts per time slice (one pass over its calls, with
difference arrays), so that thousands of calls stay readable and cheap to draw.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from agentnb.wire.states import CANCELLED, DONE, FAILED, QUEUED, RUNNING, STATES

if TYPE_CHECKING:
    from agentnb.timeline import CallRecord

#: The colour of each state (CSS), as timelines and the notebook's widgets draw it.
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


def short_type(name: str) -> str:
    """``ValueError`` for ``builtins.ValueError``; other types keep their module."""
    return name.removeprefix("builtins.")


def seconds(value: float) -> str:
    """``120 ms``, ``2.50 s``, ``12.5 s``."""
    value = max(0.0, value)
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _natural_key(name: str) -> list:
    """Sort key putting ``W2`` before ``W10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def span(records: list[CallRecord], now: float) -> tuple[float, float]:
    """When the first call was queued and when the last one ended (open calls end at ``now``)."""
    if not records:
        return now, now
    start = min(record.queued for record in records)
    end = max((record.ended if record.ended is not None else now) for record in records)
    return start, max(end, start + 1e-3)


def rows_of(records: list[CallRecord]) -> dict[str, list[CallRecord]]:
    """The calls by agent name, ``W2`` before ``W10``, each row's in the order given."""
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


def draw_svg(records: list[CallRecord], now: float, width: int, summary: str, live: bool) -> str:
    """The SVG document: ``summary`` (marked live if ``live``), a row per agent, the time axis, the legend."""
    left = _label_width(records)
    plot = _plot_width(width, records)
    rows = rows_of(records)
    start, end = span(records, now)
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


def draw_text(records: list[CallRecord], now: float, width: int, summary: str) -> str:
    """A summary line, one line per agent with a strip of ``width`` cells and its counts, the
    time axis and the legend."""
    lines = [f"Timeline: {summary}"]
    if not records:
        return lines[0]
    start, end = span(records, now)
    rows = rows_of(records)
    label_width = max(len(name) for name in rows)
    for name, calls in rows.items():
        bins = _slice_counts(calls, start, end, width, now)
        strip = "".join(_cell(bins, i) for i in range(width))
        counts = Counter(record.state for record in calls)
        figures = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
        lines.append(f"{name.ljust(label_width)} |{strip}| {figures}")
    right = seconds(end - start)
    lines.append(" " * (label_width + 2) + "0 s".ljust(max(width - len(right), 4)) + right)
    lines.append("  ".join(f"{TEXT_CHARS[state]} {state}" for state in STATES))
    return "\n".join(lines)


def crowded_rows(records: list[CallRecord], width: int) -> list[str]:
    """The agents whose rows :func:`draw_svg` of that ``width`` draws as counts per time slice."""
    plot = _plot_width(width, records)
    return [name for name, calls in rows_of(records).items() if len(calls) > plot / MIN_BAR_PIXELS]
