"""ServerPool: several agent servers (replicas) that act as one target.

One server runs its agents' Python code under one GIL: CPU-bound agents on
the same server take turns. A pool of N server processes lets N of them run
at once. Each new agent placed on a pool (``to_dist=pool``, or without an
address while the pool is this process's default) goes to its least loaded
replica.

Placement rule, chosen to cost no RPC per placement: a replica's load is the
number of agents it hosted when this process last looked (``GetInfo``, asked
of every replica at most once every :data:`LOOK_INTERVAL` seconds) plus the
agents this process placed on it since; ties go to the replica with fewer
calls running or queued at that look, then to the lowest index. A replica
that did not answer the last look is skipped until it answers again.

The replicas of a pool are recorded in the runtime directory as ordinary
servers named ``NAME-0`` ... ``NAME-{N-1}``, each record's ``extra`` saying
which pool it belongs to (:func:`agentnb.runtime_dir.mark_replica`), so that another process (a
restarted kernel) finds the pool again with :meth:`ServerPool.find`.

A pool that this process started (:func:`agentnb.start_pool`, :func:`agentnb.start_server`,
or found with :func:`agentnb.find_server`) holds how to start more of its servers, and
:meth:`ServerPool.scale` grows it through the same launcher; the new replicas take part in
placement at once (being empty, they take the next agents).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentnb._proto import agentnb_pb2 as pb
from agentnb.concurrently import gather, run_together
from agentnb.errors import AgentNotFound, AgentServerError, ServerUnavailable
from agentnb.launch.command import ENV_TOKEN
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.rpc_object import RpcObject
from agentnb.runtime_dir import ServerRecord, find_token, recorded_pools, server_address
from agentnb.runtime_home import server_display

LOOK_INTERVAL = 2.0
INFO_TIMEOUT = 5.0


class StartedServer(Protocol):
    """Servers this process started, and how to stop them: a process
    (:class:`agentnb.launch.command.ServerProcess`) or a cluster launcher's
    (:class:`agentnb.launch.launchers.LaunchedServers`, e.g. a Slurm job)."""

    def covers(self, host: str, port: int) -> bool: ...

    def shutdown(self, grace: float = 5.0) -> None: ...


class ReplicaStarter(Protocol):
    """Starts more servers for a pool, the way its first ones were started (local processes, a
    Slurm job, Ray actors); the pool gives the names (``NAME-<index>``) and its size afterwards."""

    def __call__(self, names: Sequence[str], first_index: int, total: int) -> tuple[list[Replica], list[StartedServer]]:
        """Start one server per name (indices from ``first_index``, of ``total``); return them as
        replicas and what stops them. Raises AgentServerError (none is left running then)."""
        ...


def resolve_token(host: str, port: int, token: str | None = None) -> str:
    """The token for ``host:port``: the argument, ``$AGENTNB_TOKEN`` or the server's record.

    Raises:
        AgentServerError: none of them gives one.
    """
    token = token or os.environ.get(ENV_TOKEN) or find_token(host, port)
    if not token:
        raise AgentServerError(
            f"no token for the agent server at {host}:{port}: pass token=..., set ${ENV_TOKEN}, "
            "or start the server as this user on this machine (it records its token)"
        )
    return token


@dataclass(eq=False)
class Replica:
    """One server of a pool, and what this process knows of its load."""

    host: str
    port: int
    token: str = field(repr=False)
    name: str = ""
    tls_ca: str | None = None
    agents: int = 0  # agents it hosted at the last look
    running: int = 0  # calls running or queued at the last look
    placed: int = 0  # agents this process placed on it since the last look
    reachable: bool = True

    @property
    def address(self) -> str:
        return server_address(self.host, self.port)

    @property
    def display(self) -> str:
        """How the replica is shown: ``agent server 'farm-1' at unix:/…/farm-1.sock``."""
        return server_display(self.address, self.name)

    @property
    def load(self) -> tuple[int, int]:
        """What placement minimises: agents hosted, then calls in progress."""
        return self.agents + self.placed, self.running

    def connection(self) -> ServerConnection:
        """This process's connection to the replica."""
        return ServerConnection.get(self.host, self.port, self.token, self.tls_ca)

    def look(self) -> None:
        """Ask the replica for its load (one GetInfo); an unanswered look marks it unreachable."""
        try:
            info = self.connection().info(timeout=INFO_TIMEOUT)
        except (AgentServerError, TimeoutError):
            self.reachable = False
            return
        self.agents, self.running, self.placed, self.reachable = info.agents, info.busy + info.queued, 0, True


def agent_proxy(conn: ServerConnection, desc: pb.AgentDescription) -> RpcObject:
    """A proxy (not owning its object) to the agent ``desc`` describes."""
    methods = {m: "sync" for m in desc.sync_methods} | {m: "async" for m in desc.async_methods}
    return RpcObject(conn, desc.agent_id, desc.class_name, methods, desc.name or None)


def pick_agent(found: Sequence[tuple[ServerConnection, pb.AgentDescription]], name_or_id: str,
               where: str) -> RpcObject:
    """The one agent of ``found`` with id ``name_or_id``, else the one with that name.

    Raises:
        AgentNotFound: none, or several agents of that name (the message lists their ids).
    """
    matches = ([(c, d) for c, d in found if d.agent_id == name_or_id]
               or [(c, d) for c, d in found if d.name == name_or_id])
    if not matches:
        raise AgentNotFound(f"no agent named or with id {name_or_id!r} on {where}")
    if len(matches) > 1:
        ids = ", ".join(d.agent_id for _, d in matches)
        raise AgentNotFound(f"{len(matches)} agents are named {name_or_id!r} on {where}; use an id: {ids}")
    return agent_proxy(*matches[0])


class ServerPool:
    """Several agent servers that act as one target: each new agent goes to the least loaded.

    Get one with :func:`start_pool` (starts the servers, which end with this
    process or with :meth:`stop`), :meth:`connect` (servers already running) or
    :meth:`find` (a pool recorded in the runtime directory, e.g. by
    ``%agent_server start --replicas N``). Use it as ``to_dist=pool`` (or
    ``obj.to_dist(pool=pool)``), or make it the default target with
    :func:`agentnb.rpc.placement.set_default_pool`. A pool is a context
    manager: leaving the ``with`` block stops it.
    """

    def __init__(self, replicas: Sequence[Replica], name: str = "", started: Sequence[StartedServer] = (),
                 starter: ReplicaStarter | None = None) -> None:
        if not replicas:
            raise ValueError("a server pool needs at least one replica")
        self.name = name
        self._replicas = list(replicas)
        self._started = list(started)  # the replicas' processes, when this process started them
        self._starter = starter  # how to start more of them (scale), when this process knows
        self._lock = threading.Lock()
        self._looked_at = float("-inf")
        self.stopped = False

    # -- making one ----------------------------------------------------------------------------

    @classmethod
    def connect(cls, addresses: Iterable[tuple[str, int] | tuple[str, int, str]], *, token: str | None = None,
                tls_ca: str | None = None, name: str = "") -> ServerPool:
        """A pool of servers already running at ``addresses`` ((host, port) or (host, port, token)).

        A replica's token is the one in its tuple, else ``token``, else
        ``$AGENTNB_TOKEN`` or its record in the runtime directory.
        """
        replicas = []
        for address in addresses:
            host, port = address[0], int(address[1])
            own_token = address[2] if len(address) > 2 else None
            replicas.append(Replica(host, port, resolve_token(host, port, own_token or token), tls_ca=tls_ca))
        return cls(replicas, name)

    @classmethod
    def from_records(cls, records: Iterable[ServerRecord], name: str = "",
                     starter: ReplicaStarter | None = None) -> ServerPool:
        """A pool of the servers these runtime-directory records describe (with their tokens and names);
        ``starter`` starts more of them (:meth:`scale`)."""
        return cls([Replica(r.host, r.port, r.token, r.name) for r in records], name, starter=starter)

    @classmethod
    def find(cls, name: str) -> ServerPool:
        """The pool called ``name`` recorded in this user's runtime directory (its live replicas).

        Raises:
            AgentServerError: no live replica of a pool of that name is recorded.
        """
        pools = recorded_pools()
        members = pools.get(name)
        if not members:
            known = ", ".join(sorted(pools)) or "none"
            raise AgentServerError(f"no server pool named {name!r} is running (running pools: {known})")
        return cls.from_records(members, name)

    # -- what it is ------------------------------------------------------------------------------

    @property
    def replicas(self) -> list[Replica]:
        """The pool's servers, in index order."""
        return list(self._replicas)

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self._replicas]

    def __len__(self) -> int:
        return len(self._replicas)

    def __repr__(self) -> str:
        state = " stopped" if self.stopped else ""
        return f"<ServerPool {self.name or '(unnamed)'}{state}: {', '.join(self.addresses)}>"

    def __reduce__(self) -> Any:
        # A pool handed to an agent is the same servers seen from there (never their processes).
        return (_rebuild_pool, ([(r.host, r.port, r.token, r.name, r.tls_ca) for r in self._replicas], self.name))

    # -- placement -------------------------------------------------------------------------------

    def place(self) -> Replica:
        """The replica the next agent goes to (counted as placed there).

        Raises:
            AgentServerError: the pool was stopped.
        """
        with self._lock:
            if self.stopped:
                raise AgentServerError(f"the server pool {self.name or self.addresses} was stopped")
            # One replica leaves nothing to choose: no look. Otherwise one caller looks
            # at every replica at once, outside the lock (an unanswering one takes its timeout).
            look = len(self._replicas) > 1 and time.monotonic() - self._looked_at >= LOOK_INTERVAL
            if not look:
                return self._choose()
            self._looked_at = time.monotonic()
        run_together([replica.look for replica in self._replicas])
        with self._lock:
            return self._choose()

    def _choose(self) -> Replica:
        """The least loaded reachable replica, counted as placed there (with the lock held)."""
        candidates = [r for r in self._replicas if r.reachable] or self._replicas
        chosen = min(candidates, key=lambda r: r.load)  # min() keeps the lowest index among equals
        chosen.placed += 1
        return chosen

    def mark_unreachable(self, replica: Replica) -> None:
        """Skip ``replica`` until the next look finds it answering again."""
        with self._lock:
            replica.reachable = False
            replica.placed = max(0, replica.placed - 1)

    # -- growing --------------------------------------------------------------------------------

    def scale(self, replicas: int) -> list[Replica]:
        """Grow the pool to ``replicas`` servers, started as its first ones were; return the new ones.

        The new servers are named on from the highest index (``NAME-2``, ``NAME-3``, ...),
        recorded as members of the pool (a daemon pool's show in ``%agent_server list`` and
        are found by a restarted kernel) and take part in placement at once: being empty,
        they take the next agents. Local servers are started as the pool's were (children of
        this process, or daemons); Ray places more actors; Slurm submits one more job.
        ``scale`` to the current size does nothing. A pool does not shrink: stop one
        replica of a daemon pool by its name (``stop_server("farm-3")``), or the whole pool.

        Raises:
            ValueError: ``replicas`` is below the pool's size.
            AgentServerError: the pool was stopped, or this process does not know how its
                servers were started (a pool made with :meth:`connect`, or handed to an agent),
                or a new server did not start (then none of the new ones is left running).
        """
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise TypeError(f"scale(replicas): a whole number of servers, got {replicas!r}")
        with self._lock:
            if self.stopped:
                raise AgentServerError(f"the server pool {self.name or self.addresses} was stopped")
            size = len(self._replicas)
            if replicas < size:
                raise ValueError(f"a server pool does not shrink: {self.name or 'this pool'} has {size} replicas, "
                                 f"scale({replicas}) asks for fewer; stop a daemon pool's replica by its name "
                                 f"(stop_server('{self.name or 'NAME'}-{size - 1}')) or the whole pool (stop())")
            if replicas == size:
                return []
            if self._starter is None:
                raise AgentServerError(f"this process does not know how the servers of {self!r} were started (a "
                                       "pool of ServerPool.connect, a lone daemon, or a pool handed over), so it "
                                       "cannot start more; the pools of start_pool, start_server(replicas=N) and "
                                       "find_server(POOL) can")
            first = 1 + max((_index_of(r.name, self.name) for r in self._replicas), default=-1)
            names = [f"{self.name}-{first + i}" for i in range(replicas - size)]
            starter = self._starter
        added, started = starter(names, first, replicas)
        self.adopt(added, started)
        return added

    def adopt(self, replicas: Sequence[Replica], started: Sequence[StartedServer] = ()) -> None:
        """Add ``replicas`` (servers already running; ``started`` stops them) to this pool's placement."""
        with self._lock:
            known = {(r.host, r.port) for r in self._replicas}
            self._replicas += [r for r in replicas if (r.host, r.port) not in known]
            self._started += list(started)
            self._looked_at = float("-inf")  # the next placement looks at every replica, the new ones too
        if self.stopped:  # stopped meanwhile: the new ones go too
            for server in started:
                server.shutdown(1.0)

    # -- the agents on it ------------------------------------------------------------------------

    def _descriptions(self) -> list[tuple[ServerConnection, pb.AgentDescription]]:
        """Every agent of every replica that answers (a stopped replica's agents are gone with it);
        the replicas are asked together."""

        def ask(replica: Replica) -> list[tuple[ServerConnection, pb.AgentDescription]] | ServerUnavailable:
            conn = replica.connection()
            try:
                return [(conn, desc) for desc in conn.list_agents()]
            except ServerUnavailable as exc:
                return exc

        answers = gather([functools.partial(ask, replica) for replica in self._replicas])
        found = [pair for answer in answers if not isinstance(answer, ServerUnavailable) for pair in answer]
        failures = [answer for answer in answers if isinstance(answer, ServerUnavailable)]
        if answers and len(failures) == len(answers):
            raise failures[0]
        return found

    def list_agents(self) -> list[RpcObject]:
        """Proxies to every agent on every replica."""
        return [agent_proxy(conn, desc) for conn, desc in self._descriptions()]

    def get_agent(self, name_or_id: str) -> RpcObject:
        """A proxy to the agent called ``name_or_id`` (or with that id), whichever replica hosts it.

        Raises:
            AgentNotFound: no such agent, or several of that name (use an id).
        """
        where = f"the {self._replicas[0].connection().display}" if len(self) == 1 else f"the replicas of {self!r}"
        return pick_agent(self._descriptions(), name_or_id, where)

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop every replica (running calls get ``grace`` seconds), including the ones this
        process did not start; agents placed on the pool afterwards raise AgentServerError."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        stoppers: list[Callable[[], None]] = [functools.partial(server.shutdown, grace)
                                              for server in self._started]
        stoppers += [functools.partial(_shut_down, replica, grace) for replica in self._replicas
                     if not any(server.covers(replica.host, replica.port) for server in self._started)]
        run_together(stoppers, ignore=(AgentServerError, TimeoutError))
        for replica in self._replicas:
            replica.connection().close()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _index_of(replica_name: str, pool_name: str) -> int:
    """The index in ``NAME-<index>`` (-1 for a name of another form)."""
    suffix = replica_name.removeprefix(f"{pool_name}-")
    return int(suffix) if suffix != replica_name and suffix.isdigit() else -1


def _shut_down(replica: Replica, grace: float) -> None:
    replica.connection().shutdown(grace)


def _rebuild_pool(members: list[tuple[str, int, str, str, str | None]], name: str) -> ServerPool:
    return ServerPool([Replica(host, port, token, rname, tls_ca) for host, port, token, rname, tls_ca in members],
                      name)
