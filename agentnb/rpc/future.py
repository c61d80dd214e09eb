"""CallFuture: the client's record of one call in flight."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from typing import Any

from agentnb.errors import TaskCancelled
from agentnb.wire import codec
from agentnb.wire.protocol import PROGRESS, STATE_OF_STATUS, state_of
from agentnb.wire.states import CANCELLED, DONE, FAILED, QUEUED


def decode_final(state: str, payload: codec.Encoded, address: str, what: str | Callable[[], str]) -> Any:
    """The value of a call that ended in ``state`` with ``payload``, or raise its error.

    The one decoder of a final reply, whether it came on the session stream or
    from GetResult. ``what`` names the call in errors (``"Counter.add()"``), or
    makes that name when asked (a million values decoded need no name made);
    ``address`` is its server's.
    """
    __tracebackhide__ = True
    if state == DONE:
        return codec.loads(payload, lambda: f"the result of {codec.named(what)}")
    if state == CANCELLED:
        raise TaskCancelled(f"{codec.named(what)} was cancelled before it ran")
    raise codec.decode_error(payload, address)


# Guards every future's end and callbacks: held for a few operations at a time, and a lock
# per future would be one more allocation per call (a million calls in flight in a round).
_LOCK = threading.Lock()


class CallFuture:
    """Completed by the connection's reader thread when the server replies.

    ``payload`` is kept undecoded: the value is unpickled by the thread that
    asks for it, so that user code never runs on the reader thread.
    """

    __slots__ = ("_done", "_finished", "state", "payload", "error", "submitted", "_progress", "ended",
                 "_callbacks")

    def __init__(self) -> None:
        # Held until the call ends (a threading.Event costs 20 times as much to make,
        # and every call makes one of these): waiters acquire it and give it back.
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._finished = False
        self.state = QUEUED
        self.payload: codec.Encoded = b""
        self.error: BaseException | None = None  # a local error (connection lost...)
        self.submitted = time.time()
        # The times of the progress states (queued, running: only when watched) and of the end. No dict
        # made per call: a million calls in flight hold a million fewer objects for the collector to walk.
        self._progress: dict[str, float] | None = None
        self.ended = 0.0
        self._callbacks: list[Callable[[CallFuture], None]] | None = None  # made by the first add_callback

    def done(self) -> bool:
        return self._finished

    @property
    def times(self) -> dict[str, float]:
        """When the call reached each state, by state name: ``submitted``, the progress states, the final one."""
        times = {"submitted": self.submitted}
        if self._progress:
            times.update(self._progress)
        if self._finished:
            times[self.state] = self.ended
        return times

    @property
    def failed(self) -> bool:
        """Ended otherwise than with a value: a local error, or the server's error or cancel."""
        return self._finished and (self.error is not None or self.state != DONE)

    def wait(self, timeout: float | None = None) -> bool:
        if self._finished:
            return True
        if not self._done.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        self._done.release()
        return True

    def set_reply(self, status: int, payload: codec.Encoded, timestamp: float = 0.0) -> None:
        """Record a reply of the server: a progress state, or the final one."""
        if status in PROGRESS:
            if not self._finished:
                self.state = state_of(status)
                if self._progress is None:
                    self._progress = {}
                self._progress[self.state] = timestamp or time.time()
                self._run_callbacks(final=False)
            return
        self.payload = payload
        self._finish(STATE_OF_STATUS.get(status, FAILED), timestamp)

    def set_local_error(self, error: BaseException) -> None:
        """Fail the call from the client side (e.g. the server became unreachable)."""
        if self._finished:
            return
        self.error = error
        self._finish(FAILED, 0.0)

    def _finish(self, state: str, timestamp: float) -> None:
        with _LOCK:
            if self._finished:
                return
            self.state = state
            self.ended = timestamp or time.time()
            self._finished = True
            self._done.release()
        if self._callbacks is not None:  # (most calls: nobody asked)
            self._run_callbacks(final=True)

    def outcome(self, address: str, what: str) -> Any:
        """The value of this ended call, or raise its error (a local one first); see :func:`decode_final`."""
        __tracebackhide__ = True
        if self.error is not None:
            raise self.error
        return decode_final(self.state, self.payload, address, what)

    def add_callback(self, fn: Callable[[CallFuture], None]) -> None:
        """Call ``fn(self)`` on every state change (at once if already final)."""
        with _LOCK:
            if not self._finished:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    def _run_callbacks(self, final: bool) -> None:
        if self._callbacks is None:  # most calls: nobody asked (read without the lock: see add_callback)
            return
        with _LOCK:
            callbacks = list(self._callbacks or ())
            if final:
                self._callbacks = None
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a broken callback must not kill the reader thread
                pass
