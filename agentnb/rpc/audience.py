"""Who hears an agent speak: the listeners (message hubs) of this process, by agent.

An agent speaks when it is called (``agent(x)``). The reply is handed to the
listeners registered here for that agent (see :mod:`agentnb.message_hub`),
on the thread that made the call:

* a distributed agent speaks through a proxy: ``RpcObject.__call__`` hands
  over what the call returned (an AsyncResult for an asynchronous ``__call__``);
  its key is the proxy's ``(server address, agent id)``, shared by every proxy
  of that agent;
* a local object speaks in ``AgentBase.__call__``; its key is its ``id()``.
  A hub keys an object hosted here as a distributed agent as its proxies
  (``(server address, agent id)``), so that object is heard where a proxy
  called it, never a second time by its own ``__call__``.

Nothing is looked up while no listener is registered (:data:`LISTENERS` empty).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

Listener = Callable[[Any, Any], None]  # listener(speaker, reply)

# key of an agent -> its listeners. Replaced, never changed in place, so that readers need no lock.
LISTENERS: dict[Hashable, tuple[Listener, ...]] = {}
_lock = threading.Lock()


def listen(key: Hashable, listener: Listener) -> None:
    """Have ``listener(speaker, reply)`` called each time the agent of ``key`` speaks in this process."""
    global LISTENERS
    with _lock:
        listeners = dict(LISTENERS)
        listeners[key] = (*listeners.get(key, ()), listener)
        LISTENERS = listeners


def stop_listening(key: Hashable, listener: Listener) -> None:
    """Undo one :func:`listen` (nothing happens if it is not registered)."""
    global LISTENERS
    with _lock:
        listeners = dict(LISTENERS)
        remaining = list(listeners.get(key, ()))
        if listener in remaining:
            remaining.remove(listener)
        if remaining:
            listeners[key] = tuple(remaining)
        else:
            listeners.pop(key, None)
        LISTENERS = listeners


def spoke(key: Hashable, speaker: Any, reply: Any) -> None:
    """The agent of ``key`` (``speaker``) replied ``reply``: tell its listeners."""
    for listener in LISTENERS.get(key, ()):
        listener(speaker, reply)
