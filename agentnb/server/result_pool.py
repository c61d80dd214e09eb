"""Where the results of asynchronous calls wait to be fetched.

A pool maps task ids to final replies (status and payload). Tasks are
registered as pending when accepted, so that a reader can wait for one that is
still running. The local pool is a dict bounded by ``max_len`` and
``max_expire_time``; the interface is small so that a Redis pool can replace it.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

from agentnb.errors import TaskNotFound

# How long a reader waits for a task id the pool has never seen: an AsyncResult
# handed to another server can reach it before its own call reaches this one.
UNKNOWN_TASK_GRACE = 5.0
# The shape of the task ids clients make (client id, sequence number, random part);
# any other id cannot appear later, so it is not waited for.
TASK_ID_PATTERN = re.compile(r"[0-9a-f]{12}-[0-9]+-[0-9a-f]{8}")


@dataclass(frozen=True)
class StoredResult:
    status: int   # an agentnb_pb2.ReplyStatus
    payload: bytes
    timestamp: float


class ResultPool(ABC):
    """The results of asynchronous calls, by task id."""

    @abstractmethod
    def add_pending(self, task_id: str) -> None:
        """Record that ``task_id`` was accepted and will have a result."""

    @abstractmethod
    def put(self, task_id: str, result: StoredResult) -> None:
        """Store the final result of ``task_id`` and wake its readers."""

    @abstractmethod
    def get(self, task_id: str, timeout: float | None = None) -> StoredResult:
        """Wait for the result of ``task_id``.

        Raises:
            TimeoutError: it did not finish within ``timeout`` seconds.
            TaskNotFound: the pool does not know the task (never sent, or expired).
        """

    @abstractmethod
    def __len__(self) -> int:
        """How many results (and pending tasks) are held."""


class LocalResultPool(ResultPool):
    """An in-memory pool; the oldest results go first when ``max_len`` is exceeded,
    and any result goes after ``max_expire_time`` seconds."""

    def __init__(self, max_len: int = 8192, max_expire_time: float = 7200.0) -> None:
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        if max_expire_time <= 0:
            raise ValueError("max_expire_time must be positive")
        self.max_len = max_len
        self.max_expire_time = max_expire_time
        self._results: OrderedDict[str, tuple[float, StoredResult]] = OrderedDict()
        self._pending: set[str] = set()
        self._cond = threading.Condition()

    def add_pending(self, task_id: str) -> None:
        with self._cond:
            self._pending.add(task_id)
            self._cond.notify_all()

    def put(self, task_id: str, result: StoredResult) -> None:
        now = time.monotonic()
        with self._cond:
            self._pending.discard(task_id)
            self._results[task_id] = (now + self.max_expire_time, result)
            self._results.move_to_end(task_id)
            self._evict(now)
            self._cond.notify_all()

    def _evict(self, now: float) -> None:
        results = self._results
        while len(results) > self.max_len:
            results.popitem(last=False)
        while results:
            task_id, (expires, _) = next(iter(results.items()))
            if expires > now:
                break
            del results[task_id]

    def get(self, task_id: str, timeout: float | None = None) -> StoredResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        grace = UNKNOWN_TASK_GRACE if TASK_ID_PATTERN.fullmatch(task_id) else 0.0
        unknown_deadline = time.monotonic() + grace
        with self._cond:
            while True:
                now = time.monotonic()
                entry = self._results.get(task_id)
                if entry is not None:
                    if entry[0] > now:
                        return entry[1]
                    del self._results[task_id]
                    raise TaskNotFound(f"the result of task {task_id} expired")
                if task_id not in self._pending and now >= unknown_deadline:
                    raise TaskNotFound(f"no task {task_id} on this server (never sent, or its result was evicted)")
                if deadline is not None and now >= deadline:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
                waits = [1.0]
                if deadline is not None:
                    waits.append(deadline - now)
                if task_id not in self._pending:
                    waits.append(unknown_deadline - now)
                self._cond.wait(max(0.0, min(waits)))

    def __len__(self) -> int:
        with self._cond:
            return len(self._results) + len(self._pending)


def make_pool(pool_type: str = "local", *, max_len: int = 8192, max_expire_time: float = 7200.0,
              redis_url: str | None = None) -> ResultPool:
    """The pool a server was asked for."""
    if pool_type == "local":
        return LocalResultPool(max_len=max_len, max_expire_time=max_expire_time)
    if pool_type == "redis":
        raise ValueError("pool_type 'redis' is not available yet in this version of agentnb")
    raise ValueError(f"unknown pool_type {pool_type!r}; expected 'local' or 'redis'")
