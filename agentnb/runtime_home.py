"""Where this user's runtime directory is, and the addresses of servers that listen inside it.

A module of its own, importing almost nothing, because a process uses it just
before it starts a child server (whose start must not wait for imports).
Records of servers are :mod:`agentnb.runtime_dir`'s part.

Servers on this machine that belong to one user (child servers, daemons)
listen on a Unix socket in the runtime directory (mode 0700) rather than on a
loopback port: no other user can connect to them, nor take their address. Such
a server's host is ``unix:<path>`` and its port 0.

How a server is shown to a person is decided here too, once
(:func:`server_address`, :func:`server_label`, :func:`server_display`): the name
given to it first, then one form of its address.
"""

from __future__ import annotations

import os
import pathlib
import sys

ENV_DIR = "AGENTNB_RUNTIME_DIR"
UNIX_PREFIX = "unix:"
_MAX_SOCKET_PATH = 100  # a Unix socket's path must fit in 108 bytes (sun_path)
# The names of this machine's loopback address: the hosts a local-mode server and a daemon may bind.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
_CHILD_PREFIX = "child-"  # the socket of a child server: child-<pid of its parent>-<random>.sock


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


def canonical_host(host: str) -> str:
    """``host`` with every name of this machine's loopback interface as ``127.0.0.1``."""
    # An empty host (none given) is taken as this machine too.
    return "127.0.0.1" if host in LOOPBACK_HOSTS or host == "" else host


def server_address(host: str, port: int) -> str:
    """The one form of a server's address, dialled and shown: ``unix:<path>``, or ``host:port``
    with any loopback name as ``127.0.0.1`` (a server bound to ``localhost`` listens there)."""
    return host if is_unix(host) else f"{canonical_host(host)}:{port}"


def child_socket_name(suffix: str) -> str:
    """The socket name (see :func:`socket_host`) of a child server of this process."""
    return f"{_CHILD_PREFIX}{os.getpid()}-{suffix}"


def _child_of(address: str) -> int | None:
    """The pid of the process whose child server listens at ``address``, if it is one."""
    if not is_unix(address):
        return None
    stem = os.path.basename(address)
    if not stem.startswith(_CHILD_PREFIX):
        return None
    pid = stem[len(_CHILD_PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def server_label(address: str, name: str = "") -> str:
    """What a person calls a server, shortly: the name given to it (``lab``, ``farm-1``),
    ``child server of this kernel`` (or ``of this process``, ``of process PID``), else its address."""
    parent = _child_of(address)
    if parent is not None:
        if parent != os.getpid():
            return f"child server of process {parent}"
        return "child server of this kernel" if "ipykernel" in sys.modules else "child server of this process"
    return name or address


def server_display(address: str, name: str = "") -> str:
    """The one way a server is shown in full: ``agent server 'lab' at unix:/…/lab.sock``,
    ``child server of this kernel at unix:/…``, or ``agent server at 127.0.0.1:39201`` when it has no name.

    Args:
        address: its address, as :func:`server_address` gives it.
        name: the name given to it (a daemon's, a pool replica's), or empty.
    """
    label = server_label(address, name)
    if label == address:
        return f"agent server at {address}"
    if label != name:  # a child server: the label says whose
        return f"{label} at {address}"
    return f"agent server {name!r} at {address}"


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
