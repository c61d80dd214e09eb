"""Where a distributed object goes, and how a proxy to it is made.

An explicit host/port wins (independent mode); then an explicit server pool
(``to_dist=pool``); otherwise the default target set for this process (the
notebook's daemon or pool, see :func:`set_default_server` and
:func:`set_default_pool`); otherwise this process's child servers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentServerError, ServerUnavailable
from agentnb.rpc import creations
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.future import QUEUED, CallFuture
from agentnb.rpc.methods import class_methods, qualified_name
from agentnb.rpc.rpc_object import RpcObject
from agentnb.rpc.server_pool import ServerPool, resolve_token
from agentnb.wire import codec
from agentnb.wire.ids import random_hex

_OPTION_NAMES = ("host", "port", "token", "tls_ca", "pool")
# How long the first creation on a connection waits for the server to say it queued it (a server
# that answers its handshake and pings but nothing else is as good as gone).
FIRST_ANSWER_TIMEOUT = 60.0


@dataclass(frozen=True)
class DistOptions:
    """What ``to_dist`` was asked: a server address (None for child mode) and token."""

    host: str | None = None
    port: int | None = None
    token: str | None = None
    tls_ca: str | None = None  # PEM of the CA that signed a TLS server's certificate
    pool: ServerPool | None = None

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
        unknown = sorted(set(to_dist) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown to_dist option(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(_OPTION_NAMES)}")
        host, port, pool = to_dist.get("host"), to_dist.get("port"), to_dist.get("pool")
        if pool is not None:
            if not isinstance(pool, ServerPool):
                raise TypeError(f"to_dist pool must be a ServerPool (agentnb.start_pool); got {pool!r}")
            if host is not None or port is not None:
                raise TypeError("to_dist takes a pool or a host and port, not both")
            return cls(pool=pool)
        if (host is None) != (port is None):
            raise TypeError("to_dist needs both host and port (or neither, for child mode)")
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise TypeError(f"to_dist port must be a number; got {port!r}") from None
            if not 0 < port < 65536:
                raise ValueError(f"to_dist port {port} is out of range")
        return cls(host, port, to_dist.get("token"), to_dist.get("tls_ca"))


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


def create_remote(cls: type, args: tuple, kwargs: dict, options: DistOptions) -> RpcObject:
    """Send the creation of ``cls(*args, **kwargs)`` to a server; return its proxy.

    Does not wait for ``__init__``: the proxy's first use (or ``wait_created``)
    does, and raises what ``__init__`` raised. Raises here when nothing could
    be sent (arguments that cannot be pickled, no server reachable).
    """
    payload = codec.dumps((cls, args, kwargs), f"{cls.__name__} or its constructor arguments")
    pool, detached = (options.pool, False) if options.pool is not None else (default_pool(), _default_detached)
    if options.host is None and pool is not None:
        return _create_in_pool(pool, cls, payload, owner=not detached)
    if options.host is not None:
        conn = connect(options.host, options.port, options.token, options.tls_ca)  # type: ignore[arg-type]
    else:
        from agentnb.launch.child_servers import child_server

        child = child_server()
        conn = ServerConnection.get(child.host, child.port, child.token)
    try:
        return _create(conn, cls, payload, owner=True)
    except _ReplicaGone as gone:
        raise gone.error from None


def _create_in_pool(pool: ServerPool, cls: type, payload: bytes, owner: bool) -> RpcObject:
    """Create on the least loaded replica; a replica found gone is skipped for the next one."""
    error: ServerUnavailable | None = None
    for _ in range(len(pool)):
        replica = pool.place()
        try:
            return _create(replica.connection(), cls, payload, owner)
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


def _create(conn: ServerConnection, cls: type, payload: bytes, owner: bool) -> RpcObject:
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
    conn.creations.track(future, f"{cls.__name__} {agent_id}", detached=not owner)
    proxy = RpcObject(conn, agent_id, qualified_name(cls), class_methods(cls), owner=owner, creating=future)
    creations.note(proxy)
    return proxy


def _wait_answered(future: CallFuture, timeout: float) -> bool:
    """Wait for the first reply of a call: its QUEUED state, or its end; whether it came in time."""
    answered = threading.Event()
    future.add_callback(lambda _future: answered.set())
    return QUEUED in future.times or future.done() or answered.wait(timeout)


def list_agents(host: str | None = None, port: int | None = None, token: str | None = None) -> list[RpcObject]:
    """Proxies to every object on a server (default: this process's default server or
    every replica of its default pool)."""
    return _pool_or_default(host, port, token).list_agents()


def get_agent(name_or_id: str, host: str | None = None, port: int | None = None,
              token: str | None = None) -> RpcObject:
    """A proxy to an object that already lives on a server (or on any replica of the
    default pool), found by its ``name`` attribute or its id; e.g. after a kernel restart."""
    return _pool_or_default(host, port, token).get_agent(name_or_id)


def _pool_or_default(host: str | None, port: int | None, token: str | None) -> ServerPool:
    if host is not None and port is not None:
        return ServerPool.connect([(host, int(port))], token=token)
    pool = default_pool()
    if pool is None:
        raise AgentServerError("no agent server given and no default server set (start one with %agent_server start)")
    return pool
