"""Where this user's runtime directory is, and the addresses of servers that listen inside it.

A module of its own, importing almost nothing, because a process uses it just
before it starts a child server (whose start must not wait for imports).
Records of servers are :mod:`agentnb.runtime_dir`'s part.

Servers on this machine that belong to one user (child servers, daemons)
listen on a Unix socket in the runtime directory (mode 0700) rather than on a
loopback port: no other user can connect to them, nor take their address. Such
a server's host is ``unix:<path>`` and its port 0.
"""

from __future__ import annotations

import os
import pathlib

ENV_DIR = "AGENTNB_RUNTIME_DIR"
UNIX_PREFIX = "unix:"
_MAX_SOCKET_PATH = 100  # a Unix socket's path must fit in 108 bytes (sun_path)


def runtime_dir() -> pathlib.Path:
    """Return (and create, mode 0700) the folder holding this user's server records and sockets.

    ``$AGENTNB_RUNTIME_DIR`` wins; then ``$XDG_RUNTIME_DIR/agentnb``; then
    ``~/.cache/agentnb/runtime``.
    """
    if os.environ.get(ENV_DIR):
        path = pathlib.Path(os.environ[ENV_DIR])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = pathlib.Path(os.environ["XDG_RUNTIME_DIR"]) / "agentnb"
    else:
        path = pathlib.Path.home() / ".cache" / "agentnb" / "runtime"
    (path / "servers").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def is_unix(host: str) -> bool:
    """Whether ``host`` names a Unix socket (``unix:<path>``) rather than a network host."""
    return host.startswith(UNIX_PREFIX)


def server_address(host: str, port: int) -> str:
    """The address gRPC dials for ``host`` and ``port``: ``unix:<path>``, or ``host:port``."""
    return host if is_unix(host) else f"{host}:{port}"


def socket_host(name: str) -> str | None:
    """A new ``unix:<path>`` host in this user's runtime directory for a server called ``name``;
    None when Unix sockets cannot be had here (no such sockets, or a path too long for one)."""
    if os.name != "posix":
        return None
    folder = runtime_dir() / "sockets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{name}.sock"
    if len(str(path)) > _MAX_SOCKET_PATH or path.exists():
        return None
    return f"{UNIX_PREFIX}{path}"


def remove_socket(host: str) -> None:
    """Remove the socket file of a ``unix:`` host (its server is gone)."""
    if is_unix(host):
        try:
            os.unlink(host[len(UNIX_PREFIX):])
        except OSError:
            pass
