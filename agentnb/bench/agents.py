"""The classes the workloads distribute.

They live in an importable module, so they travel to the server by reference
(no cloudpickle by value), as a user's library classes would.
"""

from __future__ import annotations

import pickle
import time

from agentnb.agents import AgentBase
from agentnb.rpc import async_func


class Buffer:
    """A value rebuilt from its buffer without a copy, as a NumPy array is (W5's view echo)."""

    def __init__(self, buffer: bytes | memoryview) -> None:
        self.buffer = buffer

    def __reduce_ex__(self, protocol: object) -> tuple:
        return Buffer, (pickle.PickleBuffer(self.buffer),)


class BenchAgent(AgentBase):
    """An agent whose methods do (almost) nothing, so that only agentnb is measured."""

    def noop(self) -> None:
        """A sync call that does nothing (W3)."""

    @async_func
    def noop_async(self) -> None:
        """An async call that does nothing (W4)."""

    def echo(self, data: bytes) -> bytes:
        """Return ``data`` as it came (W5)."""
        return data

    @async_func
    def nap(self, seconds: float) -> float:
        """Sleep ``seconds`` (W6), the stand-in for waiting on a model or the web."""
        time.sleep(seconds)
        return seconds

