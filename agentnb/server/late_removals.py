"""Shared-memory files removed a while from now, by one thread for the whole process.

A GetResult reply whose payload went into a shared-memory file may end before
its client took the file; the servicer has the file removed a while later, if
it is still there (a reader takes the file by removing it). And a file nobody
announced (its writer was killed while writing it) is removed once it has not
been written to for :data:`STALE_FILE_SECONDS` (:func:`sweep_stale_files`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

from agentnb.wire import shm

_LOGGER = logging.getLogger(__name__)


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


STALE_FILE_SECONDS = 120.0
SWEEP_INTERVAL = 10.0


def sweep_stale_files(shm_dir: shm.ShmDir, stopped: threading.Event) -> None:
    """Until ``stopped``, remove the files of ``shm_dir`` left unannounced (on a thread of its own)."""

    def sweep() -> None:
        while not stopped.wait(SWEEP_INTERVAL):
            for name in shm_dir.remove_stale(STALE_FILE_SECONDS):
                _LOGGER.info("removed the shared-memory file %s: nobody announced it (its writer died?)", name)

    threading.Thread(target=sweep, name="agentnb-stale-file-sweeper", daemon=True).start()


def remove_later(shm_dir: shm.ShmDir, name: str, delay: float) -> None:
    """Remove the file ``name`` of ``shm_dir`` in ``delay`` seconds, if it is still there."""
    _LATE_REMOVALS.add(shm_dir, name, delay)
