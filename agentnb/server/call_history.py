"""CallHistory: a server's recent calls, for a timeline of the run (the GetCalls RPC).

The servicer tells it when a call is queued in its agent's mailbox, when a
worker starts it and when its final reply goes out; it keeps the calls queued
or running now and the last :data:`HISTORY_SIZE` that ended. Recording is on
the path of every call, so it costs a small list, a dict entry and a deque
append (about a microsecond a call); names, labels and messages are made only
when someone asks.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from agentnb._proto import agentnb_pb2 as pb
from agentnb.server.hosted import HostedAgent
from agentnb.server.session import Task
from agentnb.wire.protocol import state_of
from agentnb.wire.states import QUEUED, RUNNING

HISTORY_SIZE = 10_000  # ended calls kept
_clock = time.time


class CallHistory:
    """The calls of one server's agents: open ones (queued or running) and the last ``size`` ended.

    :meth:`queued`, :meth:`started` and :meth:`ended` may be called from any
    thread (each is one dict or deque operation under the GIL); a call the
    history never saw queued (a refusal, a release's DELETE) is ignored.
    """

    def __init__(self, size: int = HISTORY_SIZE) -> None:
        if size < 1:
            raise ValueError("a call history keeps at least 1 call")
        self.size = size
        self._open: dict[Task, list] = {}  # task -> [agent, queued time, started time if it started]
        # (agent, kind, method, task id, status, queued, started, ended, error type), oldest first
        self._ended: deque[tuple] = deque(maxlen=size)
        self._ended_count = 0

    def queued(self, task: Task, agent: HostedAgent) -> None:
        """``task`` was put in ``agent``'s mailbox."""
        self._open[task] = [agent, _clock()]

    def started(self, task: Task) -> None:
        """A worker took ``task`` to run it."""
        record = self._open.get(task)
        if record is not None:
            record.append(_clock())

    def ended(self, task: Task, status: int, payload: object, now: float) -> None:
        """The final reply of ``task`` (``status``, ``payload``) was made at ``now``."""
        record = self._open.pop(task, None)
        if record is None:
            return
        call = task.call
        self._ended.append((record[0], call.kind, call.method, call.task_id, status, record[1],
                            record[2] if len(record) > 2 else 0.0, now,
                            _error_type(payload) if status == pb.ERROR else ""))
        self._ended_count += 1

    def __len__(self) -> int:
        return len(self._ended) + len(self._open)

    def listing(self, limit: int = 0) -> pb.CallList:
        """The calls kept, oldest first (the ended ones, then the open ones by when they were
        queued): the last ``limit`` of them, or all for 0."""
        # Copies, atomic under the GIL: the hot path takes no lock.
        ended: Sequence[tuple[Any, ...]] = self._ended.copy()
        forgotten = self._ended_count - len(ended)
        opened = sorted(self._open.copy().items(), key=lambda item: item[1][1])
        if limit:
            opened = opened[-limit:]
            ended = list(ended)[-(limit - len(opened)):] if limit > len(opened) else []
        calls = [_message(agent, kind, method, task_id, state_of(status), queued, started, ended_at, error)
                 for agent, kind, method, task_id, status, queued, started, ended_at, error in ended]
        for task, record in opened:
            started = record[2] if len(record) > 2 else 0.0
            call = task.call
            calls.append(_message(record[0], call.kind, call.method, call.task_id, RUNNING if started else QUEUED,
                                  record[1], started, 0.0, ""))
        return pb.CallList(calls=calls, now=_clock(), forgotten=forgotten)


_LABELS: dict[int, str] = {pb.CREATE: "__init__", pb.DELETE: "__del__", pb.DESCRIBE: "__describe__"}


def _message(agent: HostedAgent, kind: int, method: str, task_id: str, state: str, queued: float, started: float,
             ended: float, error_type: str) -> pb.RecordedCall:
    return pb.RecordedCall(agent_id=agent.agent_id, agent_name=agent.name or agent.class_name,
                           method=method or _LABELS.get(kind, ""), task_id=task_id, state=state, queued=queued,
                           started=started, ended=ended, error_type=error_type)


def _error_type(payload: object) -> str:
    """The exception type named by an ERROR reply's payload (``codec.encode_error``'s
    RemoteErrorInfo, made by this server: reading it runs nobody else's code)."""
    try:
        return str(pickle.loads(payload).type_name)  # type: ignore[arg-type]
    except Exception:
        return ""
