"""WorkerThreads: the threads that run agents' calls, at most ``capacity`` of them.

The servicer submits one job per agent with calls waiting (it runs that
agent's mailbox until it is empty, see :mod:`agentnb.server.mailbox`), so
different agents run at once, up to the server's capacity, and the calls of one
agent never do.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)


class WorkerThreads:
    """Runs submitted functions on up to ``size`` threads, made as they are needed.

    A submitted function waits in a queue until a thread is free: an idle
    thread takes it, or a new thread is made while there are fewer than
    ``size``. The threads are daemons: unlike a ThreadPoolExecutor's, they do
    not hold up the exit of a process whose server stopped while agent code
    still ran past the grace period (e.g. an in-process server after
    ``shutdown()``).
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name  # of the threads: name-1, name-2...
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with their function, each taking the next one from the queue
        self._threads = 0

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on a thread of these; a failure is logged."""
        self.submit_many([(fn, args)])

    def submit_many(self, jobs: list[tuple[Callable[..., object], tuple]]) -> None:
        """Run each ``fn(*args)`` of ``jobs`` on a thread of these (as :meth:`submit` does, with one lock for all)."""
        put = self._queue.put
        for job in jobs:
            put(job)
        with self._lock:
            taken = min(self._idle, len(jobs))  # idle threads will take these
            self._idle -= taken
            new = min(len(jobs) - taken, self._size - self._threads)
            first = self._threads + 1
            self._threads += new
        for number in range(first, first + new):
            threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except BaseException:
                _LOGGER.exception("an agentnb worker task failed")
            # Held no longer than the task runs: a call's payload may hold a shared-memory segment its writer waits for.
            fn = args = None
            with self._lock:
                self._idle += 1
