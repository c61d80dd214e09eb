"""Mailbox: an agent's calls, run one at a time in the order they arrived.

A call is posted to its agent's mailbox as it arrives. The first call posted
to an idle mailbox makes it running: the servicer then has a worker thread take
its calls one after another until none is left, and the mailbox is idle again.
So an agent never runs two calls at once, while different agents do.
"""

from __future__ import annotations

import threading
from collections import deque

from agentnb.server.session import Task


class Mailbox:
    """The calls of one agent waiting to run, and whether a worker is running them."""

    __slots__ = ("calls", "running", "handed_over", "lock")

    def __init__(self) -> None:
        self.calls: deque[Task] = deque()
        self.running = False  # a worker is taking its calls
        # Its replies the replier thread has yet to send: until they are sent, the agent's
        # next replies go through the replier too, to leave in order (see agentnb.server.replier).
        self.handed_over = 0
        self.lock = threading.Lock()

    def post(self, task: Task) -> bool:
        """Queue ``task``; True when the mailbox was idle: the caller then has a worker run it."""
        with self.lock:
            self.calls.append(task)
            if self.running:
                return False
            self.running = True
            return True

    def next(self) -> Task | None:
        """The next call to run; None when there is none left, the mailbox being idle from now on."""
        with self.lock:
            if self.calls:
                return self.calls.popleft()
            self.running = False
            return None

    def pending(self) -> int:
        """How many of its calls wait or run."""
        return len(self.calls) + (1 if self.running else 0)
