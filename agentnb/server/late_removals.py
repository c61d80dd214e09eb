"""Shared-memory files removed a while from now, by one thread for the whole process.

A GetResult reply whose payload went into a shared-memory file may end before
its client took the file; the servicer has the file removed a while later, if
it is still there (a reader takes the file by removing it).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from agentnb.wire import shm


class LateRemovals:
    """Files to remove when their time comes, on one thread (made at first use)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, shm.ShmDir, str]] = []  # a heap, soonest first
        self._cond = threading.Condition(threading.Lock())
        self._order = itertools.count()  # ties keep their order (and ShmDirs are never compared)
        self._thread: threading.Thread | None = None

    def add(self, shm_dir: shm.ShmDir, name: str, delay: float) -> None:
        """Remove the file ``name`` of ``shm_dir`` in ``delay`` seconds (if it is still there)."""
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), shm_dir, name))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentnb-file-remover", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, shm_dir, name = heapq.heappop(self._due)
            shm_dir.remove(name)


_LATE_REMOVALS = LateRemovals()


def remove_later(shm_dir: shm.ShmDir, name: str, delay: float) -> None:
    """Remove the file ``name`` of ``shm_dir`` in ``delay`` seconds, if it is still there."""
    _LATE_REMOVALS.add(shm_dir, name, delay)
