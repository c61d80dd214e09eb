"""The timeline widget: an :class:`agentnb.Timeline` drawn live in a notebook.

The drawing is the timeline's own SVG (``Timeline.svg()``) in an
``ipywidgets.HTML``: a picture of a few kilobytes per hundred calls that every
frontend shows, with hover texts, and no plotting library to install. The
process's ticker (:data:`agentnb.TICKER`) redraws it while calls run: when a
call changed state, else once a second (running bars grow); it stops after
the draw that shows every call final.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import ipywidgets as widgets

from agentnb import TICKER, Timeline

_LOGGER = logging.getLogger(__name__)

TIMELINE_CLASS = "agentnb-timeline"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
REDRAW_INTERVAL = 1.0  # seconds between redraws when no call changed state


class TimelineView:
    """A :class:`agentnb.Timeline` as an HTML widget holding its SVG, redrawn while calls run."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.widget = widgets.HTML()
        self.widget.add_class(TIMELINE_CLASS)
        self._drawn_version = -1
        self._drawn_at = 0.0
        if self.tick():
            TICKER.add(self)

    def tick(self) -> bool:
        """Redraw if something changed; False once every call is final and drawn as such."""
        final = self.timeline.done()  # read first: the final draw must not miss the last change
        version = self.timeline.version
        if final or version != self._drawn_version or time.monotonic() - self._drawn_at >= REDRAW_INTERVAL:
            self.widget.value = self.timeline.svg()
            self._drawn_version, self._drawn_at = version, time.monotonic()
        return not final


# Timelines already drawn, with the cell (execution count) that drew them: ``agentnb.timeline(...)``
# draws at once, and when it is also the cell's value the display hook must not draw it again.
_drawn: weakref.WeakKeyDictionary[Timeline, int] = weakref.WeakKeyDictionary()


def display_timeline(timeline: Timeline) -> None:
    """Show a live :class:`TimelineView` of ``timeline`` (once per cell)."""
    from IPython import get_ipython
    from IPython.display import display

    cell = getattr(get_ipython(), "execution_count", 0)
    if _drawn.get(timeline) == cell:
        return
    _drawn[timeline] = cell
    try:
        bundle: dict[str, Any] = {"text/plain": repr(timeline),
                                  WIDGET_MIME: TimelineView(timeline).widget._repr_mimebundle_()[WIDGET_MIME]}
    except Exception:
        _LOGGER.exception("agentnb: cannot draw the timeline widget")
        bundle = {"text/plain": timeline.text()}
    display(bundle, raw=True)


def register(shell: Any) -> None:
    """Draw Timelines shown in ``shell`` as live widgets."""
    shell.display_formatter.ipython_display_formatter.for_type(Timeline, display_timeline)


def unregister(shell: Any) -> None:
    """Undo :func:`register`."""
    try:
        shell.display_formatter.ipython_display_formatter.pop(Timeline)
    except KeyError:
        pass
