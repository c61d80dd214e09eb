"""What the current thread is doing on behalf of an agent server, if anything.

A server sets the chain of agents whose synchronous calls are waiting on the
task it is running; a synchronous call made from that task carries the chain
along, so that a call back into any of those agents (which could never run)
is refused at once instead of deadlocking.
"""

from __future__ import annotations

import threading

_local = threading.local()


def waiting_chain() -> tuple[str, ...] | None:
    """The agent ids blocked on the current task (the running agent last); None outside a server task."""
    return getattr(_local, "chain", None)


def set_waiting_chain(chain: tuple[str, ...] | None) -> None:
    _local.chain = chain
