"""Child mode: agent servers started by, and dying with, this process.

By default one child server hosts every agent of this process. With
``agentnb.init(child_servers=N)`` (or ``$AGENTNB_CHILD_SERVERS``) agents are
spread over up to N children: a new child is started (when an agent is
placed) while every live one already got an agent, then each agent goes to
the child that got the fewest from this process.

A child server is ``python -m agentnb.server`` in a subprocess (never a fork
of ``__main__``, which is what breaks in notebooks). It reports its port on a
pipe, reads its stdin until this process goes away, and then exits at once,
so no child outlives its parent, however the parent ends.

A child is started as soon as ``to_dist`` knows it will need one, before
this process loads grpc and pickles the agent (:func:`prestart_child_server`):
both interpreters then start up at the same time, on different cores.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import subprocess
import threading
import time
from typing import NamedTuple

from agentnb import config
from agentnb.launch.command import ask_to_stop, await_server, kill, launch_server, server_argv, wait_or_kill
from agentnb.runtime_home import child_socket_name, remove_socket, server_address, socket_host

DEFAULT_CHILD_CAPACITY = 32


class ChildServer:
    """A child server of this process.

    A plain class, not a dataclass: this module is imported before the child
    starts, and ``dataclasses`` (with ``inspect``) would delay that start.
    """

    __slots__ = ("host", "model_configs", "placed", "port", "process", "token")

    def __init__(self, process: subprocess.Popen, host: str, port: int, token: str, model_configs: str = "",
                 placed: int = 0) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.token = token
        self.model_configs = model_configs  # config.configs_digest() when it started: what it was handed
        self.placed = placed  # agents this process placed on it

    def __repr__(self) -> str:
        return f"ChildServer(pid={self.process.pid}, {server_address(self.host, self.port)}, placed={self.placed})"

    def alive(self) -> bool:
        return self.process.poll() is None


class _Launch(NamedTuple):
    """A child server started but not yet waited for (see :func:`prestart_child_server`)."""

    process: subprocess.Popen
    host: str
    ready_read: int
    token: str
    model_configs: str


_lock = threading.Lock()
_children: list[ChildServer] = []
_pending: _Launch | None = None


def child_server() -> ChildServer:
    """The child server the next agent goes to (counted as placed there).

    Started on first use (or taken over from :func:`prestart_child_server`)
    and reused after; with several allowed
    (:func:`agentnb.config.child_server_count`), see the module's doc.
    """
    global _pending
    with _lock:
        usable = _usable_children()
        if _needs_new_child(usable):
            launch, _pending = _pending, None
            if launch is None or launch.model_configs != config.configs_digest():
                if launch is not None:  # started before init(model_configs=...) changed them
                    _abandon(launch)
                launch = _launch_child()
            child = _await_child(launch)
            _children.append(child)
            usable.append(child)
        chosen = min(usable, key=lambda child: child.placed)
        chosen.placed += 1
        return chosen


def prestart_child_server() -> None:
    """Start the child server the next child-mode agent will need, without waiting for it.

    ``to_dist`` calls this before it loads the client side (grpc, the
    protocol) and pickles the agent, so that the child's own start (a new
    interpreter and its imports) runs at the same time, on another core.
    Nothing happens when a live child can take the agent or one is already
    starting; :func:`child_server` takes over the one started here.
    """
    global _pending
    # The usual case after the first agent: no lock, no poll of each child
    # (child_server() replaces a dead one itself).
    if _pending is not None or (_children and not _needs_new_child(_children)):
        return
    with _lock:
        if _pending is None and _needs_new_child(_usable_children()):
            _pending = _launch_child()


def _forget_in_forked_child() -> None:
    """In a forked child of this process: the children are the parent's, not ours.

    Their stdin pipes are closed here, so that a forked helper still running
    (a multiprocessing worker) does not keep them alive once the parent is gone.
    """
    global _lock, _children, _pending
    for process in [child.process for child in _children] + ([_pending.process] if _pending else []):
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
    if _pending is not None:
        with contextlib.suppress(OSError):
            os.close(_pending.ready_read)
    _lock = threading.Lock()  # another thread may have held it at the fork
    _children, _pending = [], None


os.register_at_fork(after_in_child=_forget_in_forked_child)


def _usable_children() -> list[ChildServer]:
    """The live children that got this process's current model configurations (call with _lock held)."""
    digest = config.configs_digest()
    # One started before init(model_configs=...) added configs lacks them: a new one gets them.
    return [child for child in _children if child.alive() and child.model_configs == digest]


def _needs_new_child(usable: list[ChildServer]) -> bool:
    """Whether the next agent starts a new child: fewer than allowed, and every one got an agent."""
    return len(usable) < config.child_server_count() and all(child.placed for child in usable)


def _launch_child(capacity: int = DEFAULT_CHILD_CAPACITY) -> _Launch:
    token = _new_token()
    digest = config.configs_digest()
    # A socket in the runtime directory where there can be one: no other user can reach it.
    host = socket_host(child_socket_name(_new_token()[:12])) or "127.0.0.1"
    # Its output is this process's own (a script's terminal): only its problems, not its every client and agent.
    process, ready_read = launch_server(server_argv(host=host, capacity=capacity, child=True, log_level="WARNING"),
                                        token, extra_env=config.server_environment())
    return _Launch(process, host, ready_read, token, digest)


def _new_token() -> str:
    """``secrets.token_urlsafe(32)``, without importing secrets (hashlib, hmac) before the child starts."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def _await_child(launch: _Launch) -> ChildServer:
    port = await_server(launch.process, launch.ready_read)
    return ChildServer(launch.process, launch.host, port, launch.token, launch.model_configs)


def _abandon(launch: _Launch) -> None:
    os.close(launch.ready_read)
    kill(launch.process)
    remove_socket(launch.host)


def stop_child_servers(grace: float = 0.3) -> None:
    """Stop every child server of this process (closing its stdin makes it exit)."""
    global _pending
    with _lock:
        children = list(_children)
        _children.clear()
        launch, _pending = _pending, None
    if launch is not None:  # started for an agent that never came
        _abandon(launch)
    for child in children:
        ask_to_stop(child.process)
    deadline = time.monotonic() + grace  # one grace for all: they stop at the same time
    for child in children:
        wait_or_kill(child.process, max(0.0, deadline - time.monotonic()))
        remove_socket(child.host)  # (a server killed before it could remove it)


atexit.register(stop_child_servers)
