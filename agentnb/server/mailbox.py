"""Mailbox: an agent's calls, run one at a time in the order they arrived.

A call is posted to its agent's mailbox as it arrives. The first call posted
to an idle mailbox makes it running: the servicer then has a worker thread take
its calls one after another until none is left, and the mailbox is idle again.
So an agent never runs two calls at once, while different agents do.

A server may host a million agents that wait for their next call: an idle
mailbox keeps no queue (a lone call waits in it as itself; a queue is made when
a second one comes, and dropped when the last call is taken), and an agent that was never called
has no mailbox at all (see :meth:`agentnb.server.hosted.HostedAgent.box`).
"""

from __future__ import annotations

import threading
from collections import deque

from agentnb.server.session import Task


class Mailbox:
    """The calls of one agent waiting to run, and whether a worker is running them."""

    __slots__ = ("calls", "running", "handed", "sent", "lock")

    def __init__(self) -> None:
        # The calls waiting: None, one Task, or a deque of them when several wait (a deque costs
        # 760 bytes, made and freed for every call if it held one alone).
        self.calls: deque[Task] | Task | None = None
        self.running = False  # a worker is taking its calls
        # Its replies handed to the replier thread, and those the replier sent: until all are sent, the
        # agent's next replies go through the replier too, to leave in order (see agentnb.server.replier).
        # Two counts, each written by one thread at a time (the worker running the mailbox; the
        # replier), read without a lock.
        self.handed = 0
        self.sent = 0
        self.lock = threading.Lock()

    def post(self, task: Task) -> bool:
        """Queue ``task``; True when the mailbox was idle: the caller then has a worker run it."""
        with self.lock:
            calls = self.calls
            if calls is None:  # the usual case: one call at a time, kept without a deque
                self.calls = task
            elif isinstance(calls, deque):
                calls.append(task)
            else:
                self.calls = deque((calls, task))
            if self.running:
                return False
            self.running = True
            return True

    def next(self) -> Task | None:
        """The next call to run; None when there is none left, the mailbox being idle from now on."""
        with self.lock:
            calls = self.calls
            if calls is None:
                self.running = False
                return None
            if not isinstance(calls, deque):
                self.calls = None
                return calls
            task = calls.popleft()
            if not calls:
                self.calls = None
            return task

    def waiting(self) -> list[Task]:
        """The calls waiting to run (a copy)."""
        with self.lock:
            calls = self.calls
            return [] if calls is None else list(calls) if isinstance(calls, deque) else [calls]

    def pending(self) -> int:
        """How many of its calls wait or run."""
        calls = self.calls
        waiting = 0 if calls is None else len(calls) if isinstance(calls, deque) else 1
        return waiting + (1 if self.running else 0)
