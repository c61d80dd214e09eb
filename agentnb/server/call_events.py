"""What the server's log says about calls: one function for each way a call ends.

- :func:`call_ended`: a worker ran the call. At INFO: an agent created (one
  line each for the first :data:`CREATIONS_LOGGED` of every
  :data:`CREATION_WINDOW` seconds, then one line for the rest of that window:
  a server creating a million agents writes a few lines, not a million), an agent
  deleted, a creation that failed, any call that failed (agent, method, error
  type and message, duration). At DEBUG: every other call, with its duration.
- :func:`call_refused`: the call was answered with an error as it arrived (no
  such agent, a deadlock, the server shutting down...), at INFO.
- :func:`call_cancelled`: a queued call was taken out of its mailbox, at INFO.

A successful call is the hot path: it costs one level check (cached by
``logging``), and formats nothing unless DEBUG is on. None of them raises: a
call the log cannot describe (any field a client may send) must not stop the
worker that ran it, nor the calls queued behind it.
"""

from __future__ import annotations

import collections
import logging
import pickle
import threading
import time

from agentnb._proto import agentnb_pb2 as pb
from agentnb.server.hosted import HostedAgent
from agentnb.wire import codec

_LOGGER = logging.getLogger(__name__)

_MESSAGE_CHARS = 300  # of an error message in the log: its first line, at most this long
_UNLOGGED = "agentnb: a call could not be logged"

def call_ended(agent: HostedAgent, call: pb.Call, status: int, payload: codec.Encoded, started: float) -> None:
    """Log a call a worker ran, which began at ``time.perf_counter()`` = ``started``
    and ended with ``status`` and ``payload`` (its final reply's)."""
    try:
        kind = call.kind
        if status == pb.OK:
            if kind == pb.CREATE:
                if _creations.one_more(agent):
                    _LOGGER.info("agent created: %s in %s", _who(agent), _duration(started))
            elif kind == pb.DELETE:
                _LOGGER.info("agent deleted: %s", _who(agent))
            elif _LOGGER.isEnabledFor(logging.DEBUG):
                _LOGGER.debug("%s done in %s [%s]", _label(agent, call), _duration(started), _who(agent))
            return
        if kind == pb.CREATE:
            _LOGGER.info("creation of %s failed after %s: %s", _who(agent), _duration(started),
                         error_summary(payload))
        else:
            _LOGGER.info("%s failed after %s: %s [%s]", _label(agent, call), _duration(started),
                         error_summary(payload), _who(agent))
    except Exception:
        _LOGGER.exception(_UNLOGGED)


CREATIONS_LOGGED = 100  # agents created logged one by one in each window; the others are counted
CREATION_WINDOW = 10.0  # seconds


class _CreationTally:
    """Which creations the log names one by one, and the count of the others, by class, per window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._logged = 0
        self._counted: collections.Counter[str] = collections.Counter()

    def one_more(self, agent: HostedAgent) -> bool:
        """Count a creation; whether to log it on its own line (else the window's summary tells it)."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= CREATION_WINDOW and not self._counted:
                self._window_start, self._logged = now, 0
            if self._logged < CREATIONS_LOGGED:
                self._logged += 1
                return True
            if not self._counted:  # the first one counted: the summary is logged when the window ends
                timer = threading.Timer(max(0.0, self._window_start + CREATION_WINDOW - now), self._summarise)
                timer.daemon = True
                timer.start()
            self._counted[agent.class_name or "agent"] += 1
            return False

    def _summarise(self) -> None:
        with self._lock:
            counted, self._counted = self._counted, collections.Counter()
            started, self._window_start, self._logged = self._window_start, time.monotonic(), 0
        try:
            _LOGGER.info("agents created: %d more in the %.0f s from %s (not named one by one): %s",
                         sum(counted.values()), time.monotonic() - started,
                         time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - started))),
                         ", ".join(f"{count} {name}" for name, count in counted.most_common()))
        except Exception:
            _LOGGER.exception(_UNLOGGED)


_creations = _CreationTally()


def call_refused(agent: HostedAgent | None, call: pb.Call, error: BaseException) -> None:
    """Log a call refused as it arrived (``agent``: the one it is for, if known)."""
    try:
        if call.kind == pb.CREATE:
            _LOGGER.info("creation of an agent (id %s) refused: %s", call.agent_id, _summary(error))
            return
        target = _who(agent) if agent is not None else f"id {call.agent_id}"
        _LOGGER.info("%s refused: %s [%s]", _label(agent, call), _summary(error), target)
    except Exception:
        _LOGGER.exception(_UNLOGGED)


def call_cancelled(agent: HostedAgent | None, call: pb.Call, why: str) -> None:
    """Log a queued call cancelled before it ran, ``why`` (e.g. ``"by its caller"``)."""
    try:
        target = _who(agent) if agent is not None else f"id {call.agent_id}"
        _LOGGER.info("%s cancelled before it ran, %s [%s]", _label(agent, call), why, target)
    except Exception:
        _LOGGER.exception(_UNLOGGED)


def error_summary(payload: codec.Encoded) -> str:
    """``Type: message`` of the error an ERROR reply's payload carries (made by ``codec.encode_error``)."""
    try:
        info = pickle.loads(payload)  # type: ignore[arg-type]
        type_name, message = info.type_name, info.message
    except Exception:
        return "an error the log cannot read"
    return _type_and_message(type_name, message)


def _summary(error: BaseException) -> str:
    kind = type(error)
    return _type_and_message(f"{kind.__module__}.{kind.__qualname__}", str(error))


def _type_and_message(type_name: str, message: str) -> str:
    type_name = type_name.removeprefix("builtins.")
    lines = message.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MESSAGE_CHARS or len(lines) > 1:
        first = first[:_MESSAGE_CHARS] + " ..."
    return f"{type_name}: {first}" if first else type_name


_KINDS = frozenset(pb.CallKind.values())


def _label(agent: HostedAgent | None, call: pb.Call) -> str:
    """``W0.compute``: the agent's name (else its class) and the method or attribute."""
    who = (agent.name or agent.class_name) if agent is not None else ""
    what = call.method or (pb.CallKind.Name(call.kind).lower() if call.kind in _KINDS else f"(call kind {call.kind})")
    if call.kind == pb.GETATTR:
        what += " (read)"
    return f"{who or 'agent'}.{what}"


def _who(agent: HostedAgent) -> str:
    """``Worker 'W0' (id 3f2a...)``: the agent's class, name and id."""
    name = f" {agent.name!r}" if agent.name else ""
    return f"{agent.class_name or 'agent'}{name} (id {agent.agent_id})"


def _duration(started: float) -> str:
    seconds = time.perf_counter() - started
    return f"{seconds * 1000:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"
