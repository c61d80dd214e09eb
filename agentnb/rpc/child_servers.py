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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentnb import config
from agentnb.errors import AgentServerError

START_TIMEOUT = 60.0
# A server that cannot start writes this and its error as JSON on the ready pipe instead of its port.
START_ERROR_PREFIX = "error "
DEFAULT_CHILD_CAPACITY = 32


@dataclass
class ChildServer:
    process: subprocess.Popen
    host: str
    port: int
    token: str
    model_configs: str = ""  # config.configs_digest() when it started: what it was handed
    placed: int = 0  # agents this process placed on it

    def alive(self) -> bool:
        return self.process.poll() is None


_lock = threading.Lock()
_children: list[ChildServer] = []
_owner_pid = os.getpid()


def child_server() -> ChildServer:
    """The child server the next agent goes to (counted as placed there).

    Started on first use and reused after; with several allowed
    (:func:`agentnb.config.child_server_count`), see the module's doc.
    """
    global _children, _owner_pid
    with _lock:
        if _owner_pid != os.getpid():  # forked: the parent's children are not ours
            _children, _owner_pid = [], os.getpid()
        digest = config.configs_digest()
        # One started before init(model_configs=...) added configs lacks them: a new one gets them.
        usable = [child for child in _children if child.alive() and child.model_configs == digest]
        if len(usable) < config.child_server_count() and all(child.placed for child in usable):
            child = start_child_server()
            _children.append(child)
            usable.append(child)
        chosen = min(usable, key=lambda child: child.placed)
        chosen.placed += 1
        return chosen


def start_child_server(capacity: int = DEFAULT_CHILD_CAPACITY) -> ChildServer:
    """Start one child server on a free loopback port and wait until it listens."""
    token = secrets.token_urlsafe(32)
    digest = config.configs_digest()
    process, port = spawn_server(["--host", "127.0.0.1", "--port", "0", "--capacity", str(capacity), "--child"], token,
                                 extra_env=config.server_environment())
    return ChildServer(process, "127.0.0.1", port, token, digest)


def spawn_server(server_args: list[str], token: str, *, extra_env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = (), **popen_kwargs: Any) -> tuple[subprocess.Popen, int]:
    """Run ``python -m agentnb.server SERVER_ARGS`` and wait until it listens.

    The token, and ``extra_env`` (e.g. the model configurations of
    ``config.server_environment()``), go through the environment, not the
    command line, which other users can read. ``wrapper`` is a command that
    runs the server (e.g. ``["ip", "netns", "exec", "ns1"]``); it must keep
    the environment and open file descriptors. Returns the process and the
    port it reported.
    """
    env = dict(os.environ)
    env.update(extra_env or {})
    env["AGENTNB_TOKEN"] = token
    ready_read, ready_write = os.pipe()
    # Modules the parent can import (its script's folder, the notebook's cwd)
    # must be importable by the server: classes in them travel by reference.
    paths = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    cmd = [*wrapper, sys.executable, "-m", "agentnb.server", *server_args, "--ready-fd", str(ready_write)]
    popen_kwargs.setdefault("stdin", subprocess.PIPE)
    popen_kwargs.setdefault("start_new_session", True)
    try:
        process = subprocess.Popen(cmd, env=env, pass_fds=(ready_write,), **popen_kwargs)
    finally:
        os.close(ready_write)
    try:
        port = read_port(ready_read, process)
    except BaseException:
        _kill(process)
        raise
    finally:
        os.close(ready_read)
    return process, port


def read_port(fd: int, process: subprocess.Popen) -> int:
    """Read the port a starting server writes as one line on ``fd`` (waiting up to START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AgentServerError(f"the agent server did not start within {START_TIMEOUT:.0f} s")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(fd, 64)
            if not chunk:
                break
            data += chunk
        elif process.poll() is not None:
            break
    text = data.decode(errors="replace").strip()
    if text.isdigit():
        return int(text)
    if text.startswith(START_ERROR_PREFIX):
        raise AgentServerError(f"the agent server failed to start: {_start_error(text)}")
    code = process.poll()
    raise AgentServerError(f"the agent server failed to start (exit status {code}); see its output")


def _start_error(text: str) -> str:
    try:
        return str(json.loads(text[len(START_ERROR_PREFIX):]))
    except ValueError:
        return text[len(START_ERROR_PREFIX):]


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(Exception):
        process.wait(5)


def stop_child_servers(grace: float = 0.3) -> None:
    """Stop every child server of this process (closing its stdin makes it exit)."""
    with _lock:
        children = list(_children) if _owner_pid == os.getpid() else []
        _children.clear()
    for child in children:
        with contextlib.suppress(Exception):
            child.process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(child.process)


atexit.register(stop_child_servers)
