"""Classes the runtime tests distribute.

They live in an importable module, so they travel to servers by reference
(child servers inherit the test process's ``sys.path``). Gates and barriers
are module globals: they are shared by every agent of one server process,
which lets a test hold an agent busy and release it without sleeping.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from agentnb import AgentBase, Msg, RpcMeta, async_func

# Seconds a gate or barrier waits before giving up, so that a broken test fails
# instead of hanging a worker thread forever.
WAIT_LIMIT = 30.0

_sync_lock = threading.Lock()
_gates: dict[str, threading.Event] = {}
_barriers: dict[str, threading.Barrier] = {}

# How many Counter objects this process has built (to see where __init__ ran).
BUILT = 0


def _gate(name: str) -> threading.Event:
    with _sync_lock:
        return _gates.setdefault(name, threading.Event())


class CustomError(Exception):
    """An error type both the test process and the servers can import."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class UnpicklableError(Exception):
    """An error that cannot travel: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class Box:
    """A plain object result, to read attributes through an AsyncResult."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Counter(metaclass=RpcMeta):
    """Not an agent: any RpcMeta class can be distributed."""

    def __init__(self, start: int = 0, fail: bool = False) -> None:
        global BUILT
        BUILT += 1
        if fail:
            raise CustomError("refusing to start", code=7)
        self.value = start
        self.built_in = os.getpid()

    def add(self, n: int = 1) -> int:
        self.value += n
        return self.value

    @async_func
    def add_later(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def built_here(self) -> int:
        """How many Counters the process hosting this one has built."""
        return BUILT

    def _secret(self) -> str:
        return "secret"


class SlowStart(metaclass=RpcMeta):
    """An object whose ``__init__`` waits until ``Worker.release(gate)`` runs in its server."""

    def __init__(self, gate: str) -> None:
        if not _gate(gate).wait(WAIT_LIMIT):
            raise TimeoutError(f"gate {gate!r} was never released")
        self.gate = gate

    def opened_by(self) -> str:
        return self.gate


class Holder(metaclass=RpcMeta):
    """An object built from a (large) value."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def size(self) -> int:
        return len(self.data)


class Worker(AgentBase):
    """An agent with the tools the runtime tests need."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.active = 0
        self.seen: list[int] = []

    @async_func
    def reply(self, x: Msg | None = None) -> Msg:
        content = x.content if x is not None else None
        return Msg(self.name, content=f"{self.name}({content})", role="assistant")

    @async_func
    def step(self, i: int) -> tuple[int, float, float, bool]:
        """Record call ``i``; report when it ran and whether another call was running."""
        overlapped = self.active > 0
        self.active += 1
        start = time.monotonic()
        time.sleep(0.001)  # widen the window in which an overlapping call would show
        self.seen.append(i)
        self.active -= 1
        return i, start, time.monotonic(), overlapped

    @async_func
    def sleep_for(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def interpreter(self) -> tuple[float, tuple[int, int, int]]:
        """The thread switch interval and the garbage collector's thresholds of the process running this agent."""
        import gc

        return sys.getswitchinterval(), gc.get_threshold()

    @async_func
    def meet(self, barrier: str, parties: int, timeout: float) -> bool:
        """Wait until ``parties`` calls (of any agents of this server) meet here."""
        with _sync_lock:
            bar = _barriers.setdefault(barrier, threading.Barrier(parties))
        bar.wait(timeout)
        return True

    @async_func
    def hold(self, gate: str, value: Any = None) -> Any:
        """Wait until ``release(gate)`` runs in this server process, then return ``value``."""
        if not _gate(gate).wait(WAIT_LIMIT):
            raise TimeoutError(f"gate {gate!r} was never released")
        return value

    def release(self, gate: str) -> None:
        _gate(gate).set()

    @async_func
    def composite(self) -> dict:
        return {"a": 1, "msg": Msg("inner", content="hello"), "items": [1, 2, 3], "box": Box(42)}

    @async_func
    def make_box(self, value: Any) -> Box:
        return Box(value)

    def echo(self, value: Any) -> Any:
        return value

    def fail(self, message: str = "boom", code: int = 3) -> None:
        raise CustomError(message, code=code)

    @async_func
    def fail_later(self, message: str = "later") -> None:
        raise ValueError(message)

    def fail_unpicklable(self) -> None:
        raise UnpicklableError("cannot travel")

    def make_lock(self) -> threading.Lock:
        return threading.Lock()  # a value that cannot travel back

    def pid(self) -> int:
        return os.getpid()

    def class_is_imported(self) -> bool:
        """Whether this object's class is the one of its importable module (by reference)."""
        module = sys.modules.get(type(self).__module__)
        return module is not None and getattr(module, type(self).__qualname__, None) is type(self)

    def ask(self, other: Any, text: str) -> str:
        """Call another distributed agent from this server; return its reply's content."""
        return other.reply(Msg(self.name, content=text)).content

    def modules_loaded(self, *names: str) -> list[bool]:
        return [name in sys.modules for name in names]

    def model_config_names(self) -> list[str]:
        from agentnb.config import model_configs

        return sorted(model_configs())


class Member(metaclass=RpcMeta):
    """Hands itself (``self``) to a Hub, which calls it back later."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heard: list[str] = []

    def join(self, hub: Any) -> int:
        return hub.register(self)

    def hear(self, text: str) -> int:
        self.heard.append(text)
        return len(self.heard)

    def heard_all(self) -> list[str]:
        return list(self.heard)

    def myself(self) -> Member:
        return self

    def stranger(self) -> Member:
        return Member("stranger")  # a plain local object: travels as a copy


class Hub(metaclass=RpcMeta):
    def __init__(self) -> None:
        self.members: list[Any] = []

    def register(self, member: Any) -> int:
        self.members.append(member)
        return len(self.members)

    def broadcast(self, text: str) -> list[int]:
        return [member.hear(text) for member in self.members]

    def member_types(self) -> list[str]:
        return [type(member).__name__ for member in self.members]
