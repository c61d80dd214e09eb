"""The agents a server hosts: its registry of them by agent id, and how they pickle.

A hosted agent is the object a CREATE call made, with what its proxies need
to know (its class name, the kinds of its methods, its name) and its mailbox.
The registry of a server maps agent ids to them, from the CREATE that adds one
to the DELETE (or failed construction) that removes it.

The objects hosted in this process are also known by their ``id()``: when one
of them is pickled (an agent handing ``self`` to another agent, or returning
it), it travels as a proxy to itself, not as a copy that would live apart
(see :func:`agentnb.wire.codec.set_hosted_reducer`).
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import Protocol

from agentnb._proto import agentnb_pb2 as pb
from agentnb.rpc.methods import ASYNC, class_methods, concurrent_methods, per_class, qualified_name
from agentnb.rpc.rpc_object import rebuild_rpc_object
from agentnb.runtime_home import is_unix
from agentnb.server.mailbox import Mailbox
from agentnb.wire import codec

_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


class Address(Protocol):
    """Where a server's agents are reached (set when it listens), and its name for messages."""

    name: str
    host: str
    port: int
    token: str


class HostedAgent:
    """One agent: its object (None until its CREATE ran, and after its DELETE) and its mailbox.

    A server may host a million of them, most of them idle: the record has
    slots, shares its class name, methods and @concurrent set with every agent of
    its class, and has no mailbox until its first call (see :meth:`box`).
    """

    __slots__ = ("agent_id", "obj", "name", "class_name", "methods", "concurrent", "created", "deleted", "mailbox")

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.obj: object | None = None
        self.name = ""
        self.class_name = ""
        self.methods: dict[str, str] = {}  # public method -> its kind (see agentnb.rpc.methods)
        self.concurrent: frozenset[str] = frozenset()  # its @concurrent methods, once its object is made
        self.created = time.time()
        self.deleted = False
        self.mailbox: Mailbox | None = None  # made by box(), at the agent's first call

    def box(self) -> Mailbox:
        """The agent's mailbox, made now if it has none. (Called with its registry's ``lock`` held.)"""
        mailbox = self.mailbox
        if mailbox is None:
            mailbox = self.mailbox = Mailbox()
        return mailbox

    def describe(self) -> pb.AgentDescription:
        """The agent as ListAgents shows it."""
        return pb.AgentDescription(
            agent_id=self.agent_id, name=self.name, class_name=self.class_name,
            sync_methods=[m for m, k in self.methods.items() if k != ASYNC],
            async_methods=[m for m, k in self.methods.items() if k == ASYNC],
            pending=self.mailbox.pending() if self.mailbox is not None else 0, created=self.created,
        )


class HostedAgents:
    """The agents of one server, by agent id.

    It is guarded by ``lock``, which its server also holds while it counts a
    call, so that a call is looked up and counted at once: :meth:`add`,
    :meth:`get` and ``len()`` are called with ``lock`` held; :meth:`remove` and
    :meth:`listing` take it themselves.
    """

    def __init__(self, lock: threading.Lock, server: Address) -> None:
        self.lock = lock
        self.server = server
        self._by_id: dict[str, HostedAgent] = {}

    def add(self, agent_id: str) -> HostedAgent | None:
        """A new agent for a CREATE; None when ``agent_id`` is taken. (``lock`` held.)"""
        if agent_id in self._by_id:
            return None
        agent = self._by_id[agent_id] = HostedAgent(agent_id)
        return agent

    def get(self, agent_id: str) -> HostedAgent | None:
        """The agent of ``agent_id``, if any. (``lock`` held.)"""
        return self._by_id.get(agent_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def host(self, agent: HostedAgent, obj: object, cls: type) -> None:
        """Make ``obj``, which a CREATE just made of ``cls``, the agent's object."""
        agent.obj = obj
        name = getattr(obj, "name", "")
        agent.name = name if isinstance(name, str) else ""
        agent.class_name = class_name(cls)
        agent.methods = class_methods(cls)
        agent.concurrent = concurrent_methods(cls)  # (after obj: a call sees these only with the object made)
        if not _HOSTED:
            codec.set_hosted_reducer(_proxy_reduction)
        _HOSTED[id(obj)] = (self.server, agent)

    def remove(self, agent: HostedAgent) -> None:
        """Forget ``agent`` and its object (a DELETE, or a construction that failed)."""
        with self.lock:
            agent.deleted = True
            self._by_id.pop(agent.agent_id, None)
        if agent.obj is not None:
            _HOSTED.pop(id(agent.obj), None)
            agent.obj = None

    def listing(self) -> list[HostedAgent]:
        """The agents whose object is made and not deleted."""
        with self.lock:
            return [a for a in self._by_id.values() if a.obj is not None and not a.deleted]


_class_names: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def class_name(cls: type) -> str:
    """``qualified_name(cls)``, one string per class for all of its agents."""
    return per_class(_class_names, cls, qualified_name)


# The agents hosted in this process, by id() of their object, with the address of their server.
_HOSTED: dict[int, tuple[Address, HostedAgent]] = {}


def _proxy_reduction(obj: object) -> tuple | None:
    """The reduction of a proxy to ``obj`` if it is an agent hosted here, else None."""
    entry = _HOSTED.get(id(obj))
    if entry is None:
        return None
    server, agent = entry
    if agent.obj is not obj or agent.deleted or not (server.port or is_unix(server.host)):
        return None
    # A server bound to every interface is reached by its host name from elsewhere.
    host = socket.gethostname() if server.host in _WILDCARD_HOSTS else server.host
    return (rebuild_rpc_object, (host, server.port, server.token, agent.agent_id, agent.class_name,
                                  agent.methods, agent.name or None, None))
