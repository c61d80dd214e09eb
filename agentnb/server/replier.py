"""The replier: one thread that sends the small final replies workers hand over while other calls run.

When many calls end together (200 naps ending at once: workload W6 of
``agentnb.bench``), a worker thread just woken up sends its reply several
times slower than one thread busy sending reply after reply. So while other
calls run, a worker leaves a small final reply to the replier and goes on with
its agent's next call; the replier counts the call finished once its reply is
sent.

An agent's replies leave in order: while one of them is with the replier, the
agent's next replies go there too (counted by ``Mailbox.handed`` and ``Mailbox.sent``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from agentnb.server.mailbox import Mailbox
from agentnb.server.session import Task
from agentnb.wire import codec
from agentnb.wire.protocol import PROGRESS

_LOGGER = logging.getLogger(__name__)

# The largest payload of a final reply a worker hands over (a larger one it sends itself).
HAND_OVER_BYTES = 64 * 2**10
_STOP = object()
# Final replies the replier sends before it counts them done (one lock for them all).
_ENDED_TOGETHER = 64


class ReplyQueue:
    """The replies handed over by workers, and the thread that sends them (made at first use).

    Args:
        send: ``send(task, status, payload)`` sends a reply of ``task``
            (storing its result when it is final).
        finished: ``finished(n)`` is called once final replies handed over are sent: their ``n`` tasks are done.
    """

    def __init__(self, send: Callable[[Task, int, codec.Encoded], None], finished: Callable[[int], None]) -> None:
        self._send = send
        self._finished = finished
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # the thread is made once
        self._thread: threading.Thread | None = None
        self._stopped = False

    def hand_over(self, mailbox: Mailbox, task: Task, status: int, payload: codec.Encoded) -> bool:
        """Leave a reply of ``task`` (whose agent has ``mailbox``) to the replier.

        False when there is no replier to take it: the caller sends it itself.
        """
        if self._thread is None and not self._start():
            return False
        if self._stopped:
            return False
        mailbox.handed += 1  # (by the worker running the mailbox: see Mailbox.handed)
        self._queue.put((mailbox, task, status, payload))
        return True

    def qsize(self) -> int:
        """How many replies wait to be sent."""
        return self._queue.qsize()

    def stop(self) -> None:
        """End the replier after the replies already handed over (the server has stopped)."""
        self._stopped = True
        self._queue.put(_STOP)

    def _start(self) -> bool:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="agentnb-replier", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # no thread to be had: each worker sends its own replies
                    _LOGGER.warning("replies are sent without the replier thread: %s", exc)
                    return False
                self._thread = thread
        return True

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            item = get()
            ended = 0  # final replies sent, counted once for those waiting together
            while item is not _STOP:
                mailbox, task, status, payload = item
                try:
                    self._send(task, status, payload)
                except Exception:
                    _LOGGER.exception("a reply could not be sent")
                finally:
                    mailbox.sent += 1
                if status not in PROGRESS:
                    ended += 1
                item = payload = task = None
                if ended >= _ENDED_TOGETHER:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if ended:
                self._finished(ended)
            if item is _STOP:
                return
