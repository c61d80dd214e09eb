"""Starting an agent server process by command line, and stopping it: the one path.

Every server agentnb starts (child servers, daemons, launchers, pools, the
benchmark's) is ``python -m agentnb.server ARGS`` run by :func:`launch_server`
and awaited by :func:`await_server` (or both at once by :func:`spawn_server`);
its options come from :func:`server_argv`, which ``agentnb.server.cli`` reads
back. The server's token goes through its environment (:data:`ENV_TOKEN`),
never its command line, which other users can read. A starting server writes
one line on its ready pipe (``--ready-fd``): its port, or
:data:`START_ERROR_PREFIX` and its error as JSON.

This module is imported before a child server starts, so it imports little
(no dataclasses, no grpc): the child's interpreter starts at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from agentnb.errors import AgentServerError

ENV_TOKEN = "AGENTNB_TOKEN"
START_ERROR_PREFIX = "error "
START_TIMEOUT = 60.0
# The levels of a server's log (``--log-level``), most detailed first; INFO unless told.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LOG_LEVEL = "INFO"


def check_log_level(level: str) -> str:
    """``level`` as ``--log-level`` takes it (upper case); ValueError naming the accepted ones if it is none of them."""
    name = level.upper() if isinstance(level, str) else level
    if name not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return name


def server_argv(*, host: str = "localhost", port: int = 0, capacity: int = 32, pool_type: str = "local",
                name: str | None = None, redis_url: str | None = None, max_len: int | None = None,
                max_expire_time: float | None = None, agent_dir: str | None = None,
                agent_modules: Sequence[str] = (), model_config_path: str | None = None, local_mode: bool = True,
                record_kind: str | None = None, log_path: str | None = None, log_level: str | None = None,
                child: bool = False, exit_with_parent: bool = False) -> list[str]:
    """The options of ``python -m agentnb.server`` that :func:`build_parser` reads back as these settings.

    An option left None (or empty) is not passed: the server takes its default.
    ``--ready-fd`` is not among them: :func:`launch_server` adds it. A ``log_level``
    not in :data:`LOG_LEVELS` is a ValueError.
    """
    if log_level:
        log_level = check_log_level(log_level)
    args = ["--host", host, "--port", str(port), "--capacity", str(capacity), "--pool-type", pool_type]
    for option, text in (("--name", name), ("--redis-url", redis_url), ("--agent-dir", agent_dir),
                         ("--model-config-path", model_config_path), ("--record-kind", record_kind),
                         ("--log-path", log_path), ("--log-level", log_level)):
        if text:
            args += [option, text]
    if max_len is not None:
        args += ["--max-len", str(max_len)]
    if max_expire_time is not None:
        args += ["--max-expire-time", repr(float(max_expire_time))]
    for module in agent_modules:
        args += ["--agent-module", module]
    for flag, present in (("--no-local-mode", not local_mode), ("--child", child),
                          ("--exit-with-parent", exit_with_parent)):
        if present:
            args.append(flag)
    return args


def spawn_server(server_args: list[str], token: str, *, extra_env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = (), python_path: Sequence[str] | None = None,
                 **popen_kwargs: Any) -> tuple[subprocess.Popen, int]:
    """Run ``python -m agentnb.server SERVER_ARGS`` and wait until it listens.

    The token, and ``extra_env`` (e.g. the model configurations of
    ``config.server_environment()``), go through the environment, not the
    command line, which other users can read. ``wrapper`` is a command that
    runs the server (e.g. ``["ip", "netns", "exec", "ns1"]``); it must keep
    the environment and open file descriptors. Returns the process and the
    port it reported. ``python_path``: the server's import path, when not this process's
    (:func:`import_path`), e.g. that of the process that asked another node to start it.
    """
    process, ready_read = launch_server(server_args, token, extra_env=extra_env, wrapper=wrapper,
                                        python_path=python_path, **popen_kwargs)
    return process, await_server(process, ready_read)


def import_path() -> list[str]:
    """This process's import path, for a server it starts: exactly its folders, no other.

    Classes of modules this process can import travel by reference, so the
    server must import them too: the script's folder, the notebook's (where the
    kernel has it), installed packages. The current directory counts only where
    this process's ``sys.path`` has it (``''``): a module another user planted in a
    shared folder one merely works in must not run in one's server.
    """
    paths = [os.getcwd() if entry == "" else os.path.abspath(entry) for entry in sys.path]
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p)))


def launch_server(server_args: list[str], token: str, *, extra_env: dict[str, str] | None = None,
                  wrapper: Sequence[str] = (), python_path: Sequence[str] | None = None,
                  **popen_kwargs: Any) -> tuple[subprocess.Popen, int]:
    """Start ``python -m agentnb.server SERVER_ARGS`` (as :func:`spawn_server`) without waiting.

    Returns the process and the read end of its ready pipe, for :func:`await_server`.
    """
    env = dict(os.environ)
    env.update(extra_env or {})
    env[ENV_TOKEN] = token
    env["PYTHONPATH"] = os.pathsep.join(import_path() if python_path is None else python_path)
    ready_read, ready_write = os.pipe()
    # -P: no current directory first on the server's sys.path (``python -m`` would put it there).
    cmd = [*wrapper, sys.executable, "-P", "-m", "agentnb.server", *server_args, "--ready-fd", str(ready_write)]
    popen_kwargs.setdefault("stdin", subprocess.PIPE)
    popen_kwargs.setdefault("start_new_session", True)
    try:
        process = subprocess.Popen(cmd, env=env, pass_fds=(ready_write,), **popen_kwargs)
    except BaseException:
        os.close(ready_read)
        raise
    finally:
        os.close(ready_write)
    return process, ready_read


def await_server(process: subprocess.Popen, ready_read: int) -> int:
    """Wait until a server of :func:`launch_server` listens; return its port.

    Closes ``ready_read``; kills the process if it failed to start.
    """
    try:
        return read_port(ready_read, process)
    except BaseException:
        kill(process)
        raise
    finally:
        os.close(ready_read)


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


def kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(Exception):
        process.wait(5)


def stop_process(process: subprocess.Popen, grace: float = 5.0, *, close_stdin: bool = True) -> None:
    """Stop a server process this one started: SIGTERM, then SIGKILL if it is still there after ``grace`` s.

    Its pipes are closed first: a ``--child`` or ``--exit-with-parent`` server
    then exits at once. ``close_stdin=False`` keeps its stdin open, so that
    SIGTERM lets its running calls finish (for up to its own grace period).
    """
    ask_to_stop(process, close_stdin=close_stdin)
    wait_or_kill(process, grace)


def ask_to_stop(process: subprocess.Popen, *, close_stdin: bool = True) -> None:
    for stream in (process.stdin if close_stdin else None, process.stdout):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)


def wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(process)


class ServerProcess:
    """A server process this process started with ``--exit-with-parent``, and how to stop it."""

    __slots__ = ("host", "name", "port", "process")

    def __init__(self, process: subprocess.Popen, host: str, port: int, name: str = "") -> None:
        self.process = process
        self.host = host
        self.port = port
        self.name = name

    def __repr__(self) -> str:
        return f"ServerProcess({self.name or '?'}, pid={self.process.pid}, {self.host}:{self.port})"

    def covers(self, host: str, port: int) -> bool:
        """Whether it is the server at ``host:port``."""
        return (host, port) == (self.host, self.port)

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop it, letting running calls finish for up to ``grace`` s."""
        # Its stdin stays open: closing it (--exit-with-parent) would end the server without the grace.
        stop_process(self.process, grace + 5.0, close_stdin=False)


def start_server_process(token: str, *, host: str = "localhost", port: int = 0, name: str | None = None,
                         agent_classes: Sequence[type] = (), extra_env: dict[str, str] | None = None,
                         log_level: str = "WARNING", **options: Any) -> ServerProcess:
    """Start a server that ends with this process (``--exit-with-parent``) and wait until it listens.

    ``options`` are those of :func:`server_argv` (capacity, pool_type, redis_url, ...);
    ``agent_classes`` are classes the server imports at start (those of ``__main__``
    travel by value instead). ``extra_env``: as for :func:`spawn_server`. The server's
    log is this process's standard output: at ``log_level``, only problems unless told.
    """
    modules = [cls.__module__ for cls in agent_classes if cls.__module__ != "__main__"]
    args = server_argv(host=host, port=port, name=name, agent_modules=modules, exit_with_parent=True,
                       log_level=log_level, **options)
    process, real_port = spawn_server(args, token, extra_env=extra_env)
    return ServerProcess(process, host, real_port, name or f"server-{real_port}")
