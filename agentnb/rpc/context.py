"""What the current thread is doing on behalf of an agent server, if anything.

A server sets the chain of agents whose synchronous calls are waiting on the
task it is running; a synchronous call made from that task carries the chain
along, so that a call back into any of those agents (which could never run)
is refused at once instead of deadlocking.
"""

from __future__ import annotations

import threading

# ``current.task``: (the call being run, a Call with its ``waiting_chain``; its agent's id), or None
# outside a server task. Set by the server for every call it runs (a thread-local attribute: no tuple made
# until a call made from the task asks for the chain).
current = threading.local()


def waiting_chain() -> tuple[str, ...] | None:
    """The agent ids blocked on the current task (the running agent last); None outside a server task."""
    task = getattr(current, "task", None)
    if task is None:
        return None
    call, agent_id = task
    return (*call.waiting_chain, agent_id)
