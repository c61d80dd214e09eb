"""LoopWaker: lets an interrupt stop a cell that awaits, promptly.

A cell blocked in ``res.result()`` gets SIGINT as a KeyboardInterrupt at once.
A cell suspended in ``await res`` is different: ipykernel (7.x) catches the
SIGINT and cancels the cell's task from another thread without waking the
kernel's event loop, so the cancellation waits until the loop wakes for some
other reason, e.g. when the awaited call finishes. While a cell runs, the
waker keeps the loop waking a few times a second, so the interrupt lands
within a fraction of a second (ipykernel reports it as CancelledError).
"""

from __future__ import annotations

import asyncio
from typing import Any

WAKE_INTERVAL = 0.1


class LoopWaker:
    """Wakes the running event loop every :data:`WAKE_INTERVAL` s between ``start`` and ``stop``."""

    def __init__(self, interval: float = WAKE_INTERVAL) -> None:
        self.interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self, *_: Any) -> None:
        """Begin waking the loop this is called from (an IPython ``pre_run_cell`` callback)."""
        self.stop()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs cells here (terminal IPython): SIGINT is direct
            return
        self._tick()

    def _tick(self) -> None:
        if self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self, *_: Any) -> None:
        """Stop waking the loop (a ``post_run_cell`` callback)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._loop = None

    def register(self, ipython: Any) -> None:
        """Run while each cell of ``ipython`` runs."""
        ipython.events.register("pre_run_cell", self.start)
        ipython.events.register("post_run_cell", self.stop)

    def unregister(self, ipython: Any) -> None:
        self.stop()
        for event, callback in (("pre_run_cell", self.start), ("post_run_cell", self.stop)):
            try:
                ipython.events.unregister(event, callback)
            except ValueError:  # was not registered
                pass
