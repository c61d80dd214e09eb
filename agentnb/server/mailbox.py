"""Mailbox: an agent's calls, run one at a time in the order they arrived.

A call is posted to its agent's mailbox as it arrives. The first call posted
to an idle mailbox makes it running: the servicer then has a worker thread take
its calls one after another until none is left, and the mailbox is idle again.
So an agent never runs two calls at once, while different agents do.

A server may host a million agents that wait for their next call: an idle
mailbox keeps no queue (it is made by the call that finds the mailbox empty,
and dropped when the last call is taken), and an agent that was never called
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
        self.calls: deque[Task] | None = None  # None while no call waits (a deque costs 760 bytes)
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
            if calls is None:
                calls = self.calls = deque()
            calls.append(task)
            if self.running:
                return False
            self.running = True
            return True

    def next(self) -> Task | None:
        """The next call to run; None when there is none left, the mailbox being idle from now on."""
        with self.lock:
            calls = self.calls
            if calls:
                task = calls.popleft()
                if not calls:
                    self.calls = None
                return task
            self.calls = None
            self.running = False
            return None

    def waiting(self) -> list[Task]:
        """The calls waiting to run (a copy)."""
        with self.lock:
            return list(self.calls or ())

    def pending(self) -> int:
        """How many of its calls wait or run."""
        calls = self.calls
        return (len(calls) if calls else 0) + (1 if self.running else 0)
