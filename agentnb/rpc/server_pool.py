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
which pool it belongs to (:func:`mark_replica`), so that another process (a
restarted kernel) finds the pool again with :meth:`ServerPool.find`.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentNotFound, AgentServerError, ServerUnavailable
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.rpc_object import RpcObject
from agentnb.runtime_dir import ServerRecord, find_token, iter_records, read_record, write_record

ENV_TOKEN = "AGENTNB_TOKEN"
LOOK_INTERVAL = 2.0
INFO_TIMEOUT = 5.0
POOL_KEY, REPLICA_KEY, REPLICAS_KEY = "pool", "replica", "replicas"  # in ServerRecord.extra

T = TypeVar("T")


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
        return f"{self.host}:{self.port}"

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

    def __init__(self, replicas: Sequence[Replica], name: str = "", launchers: Sequence[Any] = ()) -> None:
        if not replicas:
            raise ValueError("a server pool needs at least one replica")
        self.name = name
        self._replicas = list(replicas)
        self._launchers = list(launchers)  # the RpcAgentServerLaunchers of replicas started here
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
            own_token = address[2] if len(address) > 2 else None  # type: ignore[misc]
            replicas.append(Replica(host, port, resolve_token(host, port, own_token or token), tls_ca=tls_ca))
        return cls(replicas, name)

    @classmethod
    def from_records(cls, records: Iterable[ServerRecord], name: str = "") -> ServerPool:
        """A pool of the servers these runtime-directory records describe (with their tokens and names)."""
        return cls([Replica(r.host, r.port, r.token, r.name) for r in records], name)

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

        answers = gather([lambda r=replica: ask(r) for replica in self._replicas])
        found = [pair for answer in answers if not isinstance(answer, ServerUnavailable) for pair in answer]
        if answers and all(isinstance(answer, ServerUnavailable) for answer in answers):
            raise answers[0]
        return found

    def list_agents(self) -> list[RpcObject]:
        """Proxies to every agent on every replica."""
        return [agent_proxy(conn, desc) for conn, desc in self._descriptions()]

    def get_agent(self, name_or_id: str) -> RpcObject:
        """A proxy to the agent called ``name_or_id`` (or with that id), whichever replica hosts it.

        Raises:
            AgentNotFound: no such agent, or several of that name (use an id).
        """
        where = f"the agent server at {self.addresses[0]}" if len(self) == 1 else f"the replicas of {self!r}"
        return pick_agent(self._descriptions(), name_or_id, where)

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop every replica (running calls get ``grace`` seconds), including the ones this
        process did not start; agents placed on the pool afterwards raise AgentServerError."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        from agentnb.rpc import placement

        placement.forget_pool(self)
        stoppers: list[Callable[[], None]] = [lambda launcher=launcher: launcher.shutdown(grace)
                                              for launcher in self._launchers]
        started = {(launcher.host, launcher.port) for launcher in self._launchers}
        stoppers += [lambda replica=replica: replica.connection().shutdown(grace)
                     for replica in self._replicas if (replica.host, replica.port) not in started]
        run_together(stoppers, ignore=(AgentServerError, TimeoutError))
        for replica in self._replicas:
            replica.connection().close()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _rebuild_pool(members: list[tuple[str, int, str, str, str | None]], name: str) -> ServerPool:
    return ServerPool([Replica(host, port, token, rname, tls_ca) for host, port, token, rname, tls_ca in members],
                      name)


def run_together(functions: Sequence[Callable[[], Any]],
                 ignore: tuple[type[BaseException], ...] = ()) -> list[BaseException | None]:
    """Call ``functions`` in threads at once; return what each raised (None if it returned).

    An exception of a type in ``ignore`` counts as returning.
    """
    errors: list[BaseException | None] = [None] * len(functions)

    def run(i: int) -> None:
        try:
            functions[i]()
        except ignore:
            pass
        except BaseException as exc:  # handed back to the caller, who raises it
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def gather(functions: Sequence[Callable[[], T]]) -> list[T]:
    """Call ``functions`` in threads at once; return their values in order, or raise
    the first one's exception (after all of them ended)."""
    values: list[Any] = [None] * len(functions)

    def keep(i: int) -> None:
        values[i] = functions[i]()

    errors = run_together([lambda i=i: keep(i) for i in range(len(functions))])
    failure = next((error for error in errors if error is not None), None)
    if failure is not None:
        raise failure
    return values


# -- the runtime directory -------------------------------------------------------------------


def replica_name(pool_name: str, index: int) -> str:
    return f"{pool_name}-{index}"


def mark_replica(record_name: str, pool_name: str, index: int, count: int) -> ServerRecord | None:
    """Note in the record of server ``record_name`` that it is replica ``index`` of ``count`` of a pool."""
    record = read_record(record_name)
    if record is not None:
        record.extra = {**record.extra, POOL_KEY: pool_name, REPLICA_KEY: index, REPLICAS_KEY: count}
        write_record(record)
    return record


def pool_of(record: ServerRecord) -> str | None:
    """The name of the pool ``record``'s server belongs to, if any."""
    name = record.extra.get(POOL_KEY) if isinstance(record.extra, dict) else None
    return name if isinstance(name, str) else None


def recorded_pools(records: Iterable[ServerRecord] | None = None) -> dict[str, list[ServerRecord]]:
    """Every pool recorded in this user's runtime directory: its live replicas, in index order.

    Args:
        records: the records to look through, when the caller has just read
            them (:func:`agentnb.runtime_dir.iter_records`); by default, read them now.
    """
    pools: dict[str, list[ServerRecord]] = {}
    for record in iter_records() if records is None else records:
        name = pool_of(record)
        if name is not None:
            pools.setdefault(name, []).append(record)
    for members in pools.values():
        members.sort(key=lambda r: int(r.extra.get(REPLICA_KEY, 0)))
    return pools


# -- starting one from a script --------------------------------------------------------------


def start_pool(replicas: int | None = None, *, capacity: int = 32, name: str | None = None,
               host: str = "localhost", token: str | None = None, **server_options: Any) -> ServerPool:
    """Start ``replicas`` agent servers that act as one target; return their pool.

    The servers are subprocesses of this process: they end when it does, or
    at :meth:`ServerPool.stop` (or at the end of ``with start_pool(...) as
    pool:``). They are recorded in the runtime directory as ``NAME-0`` ...

    Args:
        replicas: how many servers; default ``os.cpu_count()``.
        capacity: agent calls each server runs at once.
        name: the pool's name (default ``pool-`` and a random suffix).
        host: the interface every replica binds (loopback unless ``local_mode=False``).
        token: the token of every replica (made up when not given; see ``pool.replicas``).
        server_options: further options of :class:`agentnb.RpcAgentServerLauncher`
            (``pool_type``, ``redis_url``, ``max_len``, ``max_expire_time``,
            ``local_mode``, ``agent_dir``, ``model_config_path``, ``custom_agent_classes``).

    Raises:
        AgentServerError: a replica did not start (the others are stopped); the
            message says which and why.
    """
    from agentnb.server.launcher import RpcAgentServerLauncher  # starts processes only: no server code runs here

    count = (os.cpu_count() or 1) if replicas is None else int(replicas)
    if count < 1:
        raise ValueError(f"a server pool needs at least 1 replica, got {replicas}")
    name = name or f"pool-{secrets.token_hex(3)}"
    names = [replica_name(name, i) for i in range(count)]
    taken = [n for n in names if read_record(n) is not None]
    if taken:
        raise AgentServerError(f"agent server(s) named {', '.join(taken)} already run: choose another pool name")
    token = token or secrets.token_urlsafe(32)
    launchers = [RpcAgentServerLauncher(host=host, capacity=capacity, name=n, token=token, **server_options)
                 for n in names]
    errors = run_together([launcher.launch for launcher in launchers])
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    if failed:
        run_together([launcher.shutdown for launcher in launchers], ignore=(Exception,))
        index, error = failed[0]
        raise AgentServerError(f"replica {index} of the server pool {name!r} did not start: {error}") from error
    for i, n in enumerate(names):
        mark_replica(n, name, i, count)
    members = [Replica(host, launcher.port, token, launcher.name) for launcher in launchers]  # type: ignore[arg-type]
    return ServerPool(members, name, launchers)
