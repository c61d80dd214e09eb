"""Where a distributed object goes, and how a proxy to it is made.

An explicit host/port wins (independent mode); otherwise the default server
set for this process (the notebook's daemon, see :func:`set_default_server`);
otherwise this process's child server.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentNotFound, AgentServerError
from agentnb.rpc import codec
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.rpc_object import RpcObject, wait_value
from agentnb.runtime_dir import find_token

ENV_TOKEN = "AGENTNB_TOKEN"
_OPTION_NAMES = ("host", "port", "token", "tls_ca")


@dataclass(frozen=True)
class DistOptions:
    """What ``to_dist`` was asked: a server address (None for child mode) and token."""

    host: str | None = None
    port: int | None = None
    token: str | None = None
    tls_ca: str | None = None  # PEM of the CA that signed a TLS server's certificate

    @classmethod
    def parse(cls, to_dist: Any) -> DistOptions:
        """Read ``to_dist=True`` or ``to_dist={"host": ..., "port": ...}`` (never modified)."""
        if to_dist is True:
            return cls()
        if not isinstance(to_dist, dict):
            raise TypeError(f"to_dist must be True or a dict of {', '.join(_OPTION_NAMES)}; got {to_dist!r}")
        unknown = sorted(set(to_dist) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown to_dist option(s) {', '.join(map(repr, unknown))}; "
                            f"expected some of {', '.join(_OPTION_NAMES)}")
        host, port = to_dist.get("host"), to_dist.get("port")
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
_default_server: tuple[str, int, str] | None = None
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
    global _default_server, _default_detached
    with _default_lock:
        _default_server = (host, int(port), token)
        _default_detached = detached


def clear_default_server() -> None:
    global _default_server, _default_detached
    with _default_lock:
        _default_server = None
        _default_detached = False


def default_server() -> tuple[str, int, str] | None:
    return _default_server


def connect(host: str, port: int, token: str | None = None, tls_ca: str | None = None) -> ServerConnection:
    """The connection to ``host:port``; the token comes from the argument,
    ``$AGENTNB_TOKEN`` or the server's record in the runtime directory."""
    token = token or os.environ.get(ENV_TOKEN) or find_token(host, port)
    if not token:
        raise AgentServerError(
            f"no token for the agent server at {host}:{port}: pass token=..., set ${ENV_TOKEN}, "
            "or start the server as this user on this machine (it records its token)"
        )
    return ServerConnection.get(host, port, token, tls_ca)


def _target(options: DistOptions) -> ServerConnection:
    if options.host is not None:
        return connect(options.host, options.port, options.token, options.tls_ca)  # type: ignore[arg-type]
    default = default_server()
    if default is not None:
        return ServerConnection.get(*default)
    from agentnb.rpc.child_servers import child_server

    child = child_server()
    return ServerConnection.get(child.host, child.port, child.token)


def create_remote(cls: type, args: tuple, kwargs: dict, options: DistOptions) -> RpcObject:
    """Build ``cls(*args, **kwargs)`` on a server; return its proxy.

    Raises the exception of the object's ``__init__`` if it fails there.
    """
    payload = codec.dumps((cls, args, kwargs), f"{cls.__name__} or its constructor arguments")
    detached = options.host is None and _default_detached and default_server() is not None
    conn = _target(options)
    agent_id = uuid.uuid4().hex
    future = conn.submit(pb.CREATE, agent_id, payload=payload)
    created = wait_value(future, conn, f"the creation of {cls.__name__}")
    return RpcObject(conn, agent_id, created["class_name"], created["methods"], created["name"], owner=not detached)


def agent_proxy(conn: ServerConnection, desc: pb.AgentDescription) -> RpcObject:
    methods = {m: "sync" for m in desc.sync_methods} | {m: "async" for m in desc.async_methods}
    return RpcObject(conn, desc.agent_id, desc.class_name, methods, desc.name or None)


def list_agents(host: str | None = None, port: int | None = None, token: str | None = None) -> list[RpcObject]:
    """Proxies to every object on a server (default: this process's default server)."""
    conn = _server_or_default(host, port, token)
    return [agent_proxy(conn, desc) for desc in conn.list_agents()]


def get_agent(name_or_id: str, host: str | None = None, port: int | None = None,
              token: str | None = None) -> RpcObject:
    """A proxy to an object that already lives on a server, found by its
    ``name`` attribute or its id; e.g. after a kernel restart."""
    conn = _server_or_default(host, port, token)
    agents = conn.list_agents()
    matches = [d for d in agents if d.agent_id == name_or_id] or [d for d in agents if d.name == name_or_id]
    if not matches:
        raise AgentNotFound(f"no agent named or with id {name_or_id!r} on the agent server at {conn.address}")
    if len(matches) > 1:
        ids = ", ".join(d.agent_id for d in matches)
        raise AgentNotFound(f"{len(matches)} agents are named {name_or_id!r} at {conn.address}; use an id: {ids}")
    return agent_proxy(conn, matches[0])


def _server_or_default(host: str | None, port: int | None, token: str | None) -> ServerConnection:
    if host is not None and port is not None:
        return connect(host, port, token)
    default = default_server()
    if default is None:
        raise AgentServerError("no agent server given and no default server set (start one with %agent_server start)")
    return ServerConnection.get(*default)
