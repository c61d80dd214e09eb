"""Where a distributed object goes, and how a proxy to it is made.

An explicit host/port wins (independent mode); then an explicit server pool
(``to_dist=pool``); otherwise the default target set for this process (the
notebook's daemon or pool, see :func:`set_default_server` and
:func:`set_default_pool`); otherwise this process's child servers.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agentnb._proto import agentnb_pb2 as pb
from agentnb.concurrently import gather
from agentnb.errors import AgentNotFound, AgentServerError, ServerUnavailable
from agentnb.rpc import creations
from agentnb.rpc.call_policy import CallPolicy
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.future import QUEUED, CallFuture
from agentnb.rpc.methods import class_methods, qualified_name
from agentnb.rpc.rpc_object import RpcObject
from agentnb.rpc.server_pool import ServerPool, agent_proxy, pick_agent, resolve_token
from agentnb.runtime_dir import ServerRecord, iter_records, read_record, recorded_pools
from agentnb.wire import codec
from agentnb.wire.ids import random_hex

T = TypeVar("T")

_OPTION_NAMES = ("host", "port", "token", "tls_ca", "pool", "max_timeout_seconds", "retry_strategy")
# Options of the seed's to_dist that set up the child server it started for each object. Here
# servers are shared, so these belong where a server starts: a clear refusal names that place.
_SERVER_OPTIONS = {
    "max_pool_size": "max_len",
    "max_expire_time": "max_expire_time",
    "local_mode": "local_mode",
}
# How long the first creation on a connection waits for the server to say it queued it (a server
# that answers its handshake and pings but nothing else is as good as gone).
FIRST_ANSWER_TIMEOUT = 60.0
# How long get_agent and list_agents wait for each of your servers' agents when no server is given.
LOOKUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DistOptions:
    """What ``to_dist`` was asked: a server address (None for child mode) and token, or a pool;
    the agent's call limits (``max_timeout_seconds``, ``retry_strategy``)."""

    host: str | None = None
    port: int | None = None
    token: str | None = None
    tls_ca: str | None = None  # PEM of the CA that signed a TLS server's certificate
    pool: ServerPool | None = None
    policy: CallPolicy | None = None  # max_timeout_seconds and retry_strategy
    # Method kinds the caller chose (agentnb.to_dist's async_methods), over those of the class.
    method_kinds: dict[str, str] | None = None

    @classmethod
    def parse(cls, to_dist: Any) -> DistOptions:
        """Read ``to_dist=True``, ``to_dist=pool`` or ``to_dist={"host": ..., "port": ...}``
        (or ``{"pool": pool}``); the dict is never modified."""
        if to_dist is True:
            return cls()
        if isinstance(to_dist, ServerPool):
            return cls(pool=to_dist)
        if not isinstance(to_dist, dict):
            raise TypeError(f"to_dist must be True, a ServerPool or a dict of {', '.join(_OPTION_NAMES)}; "
                            f"got {to_dist!r}")
        _refuse_server_options(to_dist)  # what is left of them (local_mode=True) holds here already
        unknown = sorted(set(to_dist) - set(_OPTION_NAMES) - set(_SERVER_OPTIONS))
        if unknown:
            raise TypeError(f"unknown to_dist option(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(_OPTION_NAMES)}")
        host, port, pool = to_dist.get("host"), to_dist.get("port"), to_dist.get("pool")
        policy = CallPolicy.parse(to_dist)
        if pool is not None:
            if not isinstance(pool, ServerPool):
                raise TypeError(f"to_dist pool must be a ServerPool (agentnb.start_pool); got {pool!r}")
            if host is not None or port is not None:
                raise TypeError("to_dist takes a pool or a host and port, not both")
            return cls(pool=pool, policy=policy)
        if (host is None) != (port is None):
            raise TypeError("to_dist needs both host and port (or neither, for child mode)")
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise TypeError(f"to_dist port must be a number; got {port!r}") from None
            if not 0 < port < 65536:
                raise ValueError(f"to_dist port {port} is out of range")
        return cls(host, port, to_dist.get("token"), to_dist.get("tls_ca"), policy=policy)


def _refuse_server_options(to_dist: dict[str, Any]) -> None:
    """Refuse the seed's per-object server settings, naming where agentnb takes them."""
    given = [name for name in _SERVER_OPTIONS if name in to_dist]
    if not given:
        return
    if given == ["local_mode"] and to_dist["local_mode"] is True:
        return  # what every child server does: it listens on this machine only
    settings = ", ".join(f"{name} (there: {_SERVER_OPTIONS[name]})" for name in given)
    raise TypeError(
        f"to_dist option(s) {settings} set up a server, and agentnb's servers are shared by many objects: "
        "give them where the server starts (as_server start --max-len/--max-expire-time/--no-local-mode, "
        "RpcAgentServerLauncher(...), agentnb.start_server(...) or agentnb.start_pool(...)) and pass its "
        "host and port (or the pool) to to_dist")


_default_lock = threading.Lock()
_default_pool: ServerPool | None = None
_default_detached = False


def set_default_server(host: str, port: int, token: str, *, detached: bool = False) -> None:
    """Place objects distributed without an address on this server (used by
    ``%agent_server start`` / ``use``) instead of a child server.

    With ``detached=True`` (what ``%agent_server`` does: the server is a daemon)
    the objects placed there this way belong to the server, not to their
    proxies: they stay when the proxy is garbage-collected or this process
    exits, so that a restarted kernel can re-attach to them with
    :func:`get_agent`. ``proxy.close()`` still deletes one.
    """
    set_default_pool(ServerPool.connect([(host, int(port), token)]), detached=detached)


def set_default_pool(pool: ServerPool, *, detached: bool = False) -> None:
    """Place objects distributed without an address on ``pool``, each on its least
    loaded replica (see :mod:`agentnb.rpc.server_pool`); ``detached`` as for
    :func:`set_default_server`."""
    global _default_pool, _default_detached
    if not isinstance(pool, ServerPool):
        raise TypeError(f"expected a ServerPool, got {pool!r}")
    with _default_lock:
        _default_pool = pool
        _default_detached = detached


def clear_default_server() -> None:
    """Go back to child servers for objects distributed without an address."""
    global _default_pool, _default_detached
    with _default_lock:
        _default_pool = None
        _default_detached = False


def default_pool() -> ServerPool | None:
    """The default target of this process (a pool of one for a single server), if set.

    A default pool that was stopped is no longer the default.
    """
    global _default_pool, _default_detached
    pool = _default_pool
    if pool is not None and pool.stopped:
        with _default_lock:
            if _default_pool is pool:
                _default_pool, _default_detached = None, False
        return None
    return pool


def default_server() -> tuple[str, int, str] | None:
    """The default server as (host, port, token); for a pool of several, its first replica."""
    pool = default_pool()
    if pool is None:
        return None
    first = pool.replicas[0]
    return first.host, first.port, first.token


def connect(host: str, port: int, token: str | None = None, tls_ca: str | None = None) -> ServerConnection:
    """The connection to ``host:port``; the token comes from the argument,
    ``$AGENTNB_TOKEN`` or the server's record in the runtime directory."""
    return ServerConnection.get(host, port, resolve_token(host, port, token), tls_ca)


def create_remote(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], options: DistOptions, *,
                  instance: Any = None) -> RpcObject:
    """Send the creation of ``cls(*args, **kwargs)`` to a server; return its proxy.

    With ``instance`` (an object of ``cls``) that object itself is sent, as it is
    now, and hosted there (``args`` and ``kwargs`` are then empty).

    Does not wait for ``__init__``: the proxy's first use (or ``wait_created``)
    does, and raises what ``__init__`` raised. Raises here when nothing could
    be sent (arguments that cannot be pickled, no server reachable).
    """
    if instance is None:
        payload = codec.dumps((cls, args, kwargs), f"{cls.__name__} or its constructor arguments")
    else:  # the server calls adopt(instance): the object made is the one sent
        payload = codec.dumps((adopt, (instance,), {}), f"the {cls.__name__} object")
    return creator(options)(cls, payload, None)


def creator(options: DistOptions) -> Callable[[type, codec.Encoded, str | None], RpcObject]:
    """Where objects created with ``options`` go: ``create(cls, payload, label=None)``, which sends
    one creation there and returns its proxy (``label``: the object's name, for its errors).

    The server (or pool) and its connection are found once, here: a creator of many objects
    (:func:`agentnb.rpc.batches.create_many`) calls ``create`` for each.

    Raises:
        ServerUnavailable: (from ``create``) the server cannot be reached.
    """
    pool, detached = (options.pool, False) if options.pool is not None else (default_pool(), _default_detached)
    if options.host is None and pool is not None:
        in_pool = pool

        def create_in_pool(cls: type, payload: codec.Encoded, label: str | None = None) -> RpcObject:
            return _create_in_pool(in_pool, cls, payload, owner=not detached, options=options, label=label)

        return create_in_pool
    if options.host is not None:
        conn = connect(options.host, options.port, options.token, options.tls_ca)  # type: ignore[arg-type]
    else:
        from agentnb.launch.child_servers import child_server

        child = child_server()
        conn = ServerConnection.get(child.host, child.port, child.token)

    def create(cls: type, payload: codec.Encoded, label: str | None = None) -> RpcObject:
        try:
            return _create(conn, cls, payload, owner=True, options=options, label=label)
        except _ReplicaGone as gone:
            raise gone.error from None

    return create


def adopt(obj: T) -> T:
    """``obj`` itself: what a server calls to "create" an object that travelled whole."""
    return obj


def _create_in_pool(pool: ServerPool, cls: type, payload: codec.Encoded, owner: bool,
                    options: DistOptions, label: str | None = None) -> RpcObject:
    """Create on the least loaded replica; a replica found gone is skipped for the next one."""
    error: ServerUnavailable | None = None
    for _ in range(len(pool)):
        replica = pool.place()
        try:
            return _create(replica.connection(), cls, payload, owner, options, label)
        except _ReplicaGone as gone:
            pool.mark_unreachable(replica)
            error = gone.error
    assert error is not None
    raise error


class _ReplicaGone(Exception):
    """The server could not be reached at all (the object was not created)."""

    def __init__(self, error: ServerUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


def _create(conn: ServerConnection, cls: type, payload: codec.Encoded, owner: bool, options: DistOptions,
            label: str | None = None) -> RpcObject:
    """Send the creation and return the proxy at once; its first use waits for the object.

    Only the first creation on a connection that has not answered yet waits, for
    the server to say it queued it (not for ``__init__``), so that an unreachable
    server or a refused token is raised here (and a pool can try its next replica).
    """
    agent_id = random_hex()
    proven = conn.answering()
    try:
        # Not proven: ask the server to say when it queued the creation (before __init__ runs).
        future = conn.submit(pb.CREATE, agent_id, payload=payload, watch=not proven, owned=owner)
    except ServerUnavailable as exc:
        raise _ReplicaGone(exc) from None
    if not proven:  # a wrong address or token is the caller's mistake: say so here, not at first use
        if not _wait_answered(future, FIRST_ANSWER_TIMEOUT):
            raise _ReplicaGone(ServerUnavailable(
                f"the agent server at {conn.address} took the creation of {cls.__name__} but did not say within "
                f"{FIRST_ANSWER_TIMEOUT:.0f} s that it queued it"))
        if isinstance(future.error, ServerUnavailable):
            raise _ReplicaGone(future.error)
        if future.error is not None:
            raise future.error
    conn.creations.track(future, f"{cls.__name__} {label + ' ' if label else ''}{agent_id}", detached=not owner)
    proxy = RpcObject(conn, agent_id, qualified_name(cls), class_methods(cls), label, owner=owner, creating=future,
                      policy=options.policy, method_kinds=options.method_kinds)
    creations.note(proxy)
    return proxy


def _wait_answered(future: CallFuture, timeout: float) -> bool:
    """Wait for the first reply of a call: its QUEUED state, or its end; whether it came in time."""
    answered = threading.Event()
    future.add_callback(lambda _future: answered.set())
    return QUEUED in future.times or future.done() or answered.wait(timeout)


def list_agents(host: str | None = None, port: int | None = None, token: str | None = None, *,
                server: str | None = None) -> list[RpcObject]:
    """Proxies to every object on a server.

    Which server: the one at ``host`` and ``port``; else the daemon or pool
    named ``server``; else this process's default server (every replica of its
    default pool); else, with no default set, every server of yours running on
    this machine (those that answer).

    Raises:
        AgentServerError: no server given, no default set and none of yours runs;
            or no server named ``server`` runs.
    """
    target = _given_or_default(host, port, token, server)
    if target is not None:
        return target.list_agents()
    found, _, _ = _agents_on_your_servers()
    return [agent_proxy(conn, desc) for _, conn, desc in found]


def get_agent(name_or_id: str, host: str | None = None, port: int | None = None,
              token: str | None = None, *, server: str | None = None) -> RpcObject:
    """A proxy to an object that already lives on a server, found by its ``name``
    attribute or its id; e.g. after a kernel restart.

    Where it is looked for: on the server at ``host`` and ``port``; else on the
    daemon or pool named ``server``; else on this process's default server (any
    replica of its default pool); else, with no default set, on every server of
    yours running on this machine, where it must be found once.

    Raises:
        AgentNotFound: no such object; several of that name (the message says
            where: pass ``server=`` or an id); with no default set, the message
            lists the running servers it was looked for on.
        AgentServerError: no server given, no default set and none of yours runs.
    """
    target = _given_or_default(host, port, token, server)
    if target is not None:
        return target.get_agent(name_or_id)
    found, answered, silent = _agents_on_your_servers()
    matches = ([m for m in found if m[2].agent_id == name_or_id]
               or [m for m in found if m[2].name == name_or_id])
    if len(matches) == 1:
        _, conn, desc = matches[0]
        return agent_proxy(conn, desc)
    hosts = list(dict.fromkeys(record.name for record, _, _ in matches))
    if len(hosts) > 1:
        raise AgentNotFound(f"{name_or_id!r} lives on {_listed(hosts)}; pass server=... "
                            f"(agentnb.get_agent({name_or_id!r}, server={hosts[0]!r})), "
                            "or choose one with %agent_server use NAME")
    if matches:  # several of that name on one server: pick_agent asks for an id
        return pick_agent([(conn, desc) for _, conn, desc in matches], name_or_id, f"the {matches[0][1].display}")
    where = f"any of your running agent servers ({_listed(answered)})" if answered else "your running agent servers"
    unanswered = f"; {_listed(silent)} did not answer" if silent else ""
    raise AgentNotFound(f"no agent named or with id {name_or_id!r} on {where}{unanswered}")


def _listed(names: list[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b' and 'c'``."""
    quoted = [repr(name) for name in names]
    return " and ".join(quoted) if len(quoted) < 3 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _given_or_default(host: str | None, port: int | None, token: str | None, server: str | None) -> ServerPool | None:
    """The server given (by address or by name), else the default one; None when neither."""
    if host is not None and port is not None:
        return ServerPool.connect([(host, int(port))], token=token)
    if server is not None:
        return _recorded(server)
    return default_pool()


def _recorded(name: str) -> ServerPool:
    """The pool, or the one server, called ``name`` in this user's runtime directory."""
    members = recorded_pools().get(name)
    if members:
        return ServerPool.from_records(members, name)
    record = read_record(name) if name and "/" not in name and not name.startswith(".") else None
    if record is None:
        running = ", ".join(r.name for r in iter_records()) or "none"
        raise AgentServerError(f"no agent server named {name!r} is running (running: {running})")
    return ServerPool.from_records([record], name)


def _agents_on_your_servers() -> tuple[list[tuple[ServerRecord, ServerConnection, pb.AgentDescription]],
                                       list[str], list[str]]:
    """Every agent on every server recorded in this user's runtime directory (asked at once),
    with its server; then the names of the servers that answered, and of those that did not.

    Raises:
        AgentServerError: none of this user's servers runs (the one case that suggests starting one).
    """
    records = list(iter_records())
    if not records:
        raise AgentServerError("no agent server given and no default server set (start one with %agent_server start)")

    def ask(record: ServerRecord) -> list[pb.AgentDescription] | None:
        try:
            return ServerConnection.get(record.host, record.port, record.token).list_agents(timeout=LOOKUP_TIMEOUT)
        except (AgentServerError, TimeoutError):
            return None

    answers = gather([functools.partial(ask, record) for record in records])
    found = [(record, ServerConnection.get(record.host, record.port, record.token), desc)
             for record, answer in zip(records, answers, strict=True) for desc in answer or ()]
    answered = [record.name for record, answer in zip(records, answers, strict=True) if answer is not None]
    silent = [record.name for record, answer in zip(records, answers, strict=True) if answer is None]
    return found, answered, silent
