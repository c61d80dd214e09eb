"""RpcAgentServerLauncher: start an agent server from Python code."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from agentnb.config import init, server_environment
from agentnb.errors import AgentServerError
from agentnb.launch.command import DEFAULT_LOG_LEVEL, ServerProcess, check_log_level, start_server_process
from agentnb.server.agent_server import AgentServer
from agentnb.server.cli import import_agent_dir
from agentnb.server.server_log import configure_server_log


def _stop_at_exit(server: AgentServer) -> None:
    """Stop an in-process server when the interpreter exits, before it joins its threads.

    A gRPC handler thread serving an open session (a client of this very
    process, or of another) never ends by itself, and the interpreter joins
    thread-pool threads before it runs ``atexit`` handlers: without this, a
    script that launched a server with ``in_subprocess=False`` and ended
    without ``shutdown()`` would never exit. ``threading._register_atexit``
    hooks run before that join (concurrent.futures relies on the same hook).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # not expected on CPython >= 3.9
        return
    with contextlib.suppress(RuntimeError):  # already shutting down
        register(lambda: server.stop(grace=0))


# Options of the seed's launcher that agentnb's servers do not have, and what to use instead.
_REFUSED = {
    "max_timeout_seconds": "agentnb's servers put no limit on a call; give a caller's limit per agent: "
                           "to_dist={..., 'max_timeout_seconds': N}, or res.result(timeout=N)",
    "studio_url": "agentnb has no AgentScope Studio; watch servers with agentnb.list_servers(), "
                  "agentnb.server_logs() and agentnb.timeline()",
}


def _refuse(options: dict[str, Any]) -> None:
    """A TypeError for options this launcher does not take, naming what to use instead."""
    if not options:
        return
    known = [f"{name}: {_REFUSED[name]}" for name in sorted(options) if name in _REFUSED]
    unknown = sorted(name for name in options if name not in _REFUSED)
    parts = known + ([f"unknown option(s) {', '.join(map(repr, unknown))}; RpcAgentServerLauncher takes host, "
                      "port, custom_agent_classes, capacity, pool_type, redis_url, max_len (max_pool_size), "
                      "max_expire_time, local_mode, agent_dir, model_config_path, name (server_id), token, "
                      "log_level"] if unknown else [])
    raise TypeError("RpcAgentServerLauncher: " + "; ".join(parts))


def _one_of(name: str, value: Any, default: Any, seed_name: str, seed_value: Any) -> Any:
    """An option given by its agentnb name or by the seed's; both, differing, is an error."""
    if seed_value is None:
        return value
    if value != default and value != seed_value:
        raise TypeError(f"RpcAgentServerLauncher: {name}={value!r} and {seed_name}={seed_value!r} are the same "
                        f"option; give one")
    return seed_value


class RpcAgentServerLauncher:
    """Starts an agent server, in this process or in a subprocess.

    Args:
        host: interface to bind; loopback unless ``local_mode=False``.
        port: port to listen on; None picks a free one (read :attr:`port` after ``launch``).
        custom_agent_classes: classes the server should know. Classes defined in
            ``__main__`` need no registration (they travel by value); importable
            ones are imported by the server.
        capacity: agent calls running at once.
        pool_type, redis_url, max_len, max_expire_time: the result store.
        local_mode: refuse non-loopback hosts unless False.
        agent_dir: import every module of this folder in the server.
        model_config_path: a JSON file of model configurations.
        name: the server's name in the runtime directory.
        token: the token callers must send; made up when not given, and recorded
            in this user's runtime directory so that ``to_dist(host=, port=)`` finds it.
        max_pool_size, server_id: the seed's names of ``max_len`` and ``name``.
        log_level: what the server logs (``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``).
            In a subprocess its log is the subprocess's standard output, at INFO
            unless told. In this process it sets the level of the ``agentnb.server``
            loggers (None leaves this process's logging alone).

    Raises:
        ValueError: ``log_level`` is not one of those levels.
        TypeError: an option agentnb does not have (the message names what to use instead).
    """

    def __init__(self, host: str = "localhost", port: int | None = None,
                 custom_agent_classes: Sequence[type] | None = None, capacity: int = 32,
                 pool_type: str = "local", redis_url: str | None = None, max_len: int = 8192,
                 max_expire_time: float = 7200.0, local_mode: bool = True, agent_dir: str | None = None,
                 model_config_path: str | None = None, name: str | None = None, token: str | None = None,
                 log_level: str | None = None, max_pool_size: int | None = None, server_id: str | None = None,
                 **seed_options: Any) -> None:
        _refuse(seed_options)
        max_len = _one_of("max_len", max_len, 8192, "max_pool_size", max_pool_size)
        name = _one_of("name", name, None, "server_id", server_id)
        self.host = host
        self.port = int(port) if port else None
        self.custom_agent_classes = list(custom_agent_classes or [])
        self.capacity = capacity
        self.pool_type = pool_type
        self.redis_url = redis_url
        self.max_len = max_len
        self.max_expire_time = max_expire_time
        self.local_mode = local_mode
        self.agent_dir = agent_dir
        self.model_config_path = model_config_path
        self.name = name
        self.token = token or secrets.token_urlsafe(32)
        self.log_level = check_log_level(log_level) if log_level is not None else None
        self.server: AgentServer | None = None
        self.process: subprocess.Popen | None = None
        self._started: ServerProcess | None = None

    def launch(self, in_subprocess: bool = True) -> None:
        """Start the server; return once it accepts calls (its port is then :attr:`port`).

        Raises AgentServerError if the port is taken.
        """
        if self.server is not None or self.process is not None:
            raise AgentServerError("this launcher has already launched its server")
        if in_subprocess:
            self._launch_subprocess()
        else:
            self._launch_here()

    def _launch_here(self) -> None:
        if self.model_config_path:
            init(model_configs=self.model_config_path)
        if self.agent_dir:
            import_agent_dir(self.agent_dir)
        if self.log_level is not None:
            configure_server_log(self.log_level)
        self.server = AgentServer(
            self.host, self.port, name=self.name, token=self.token, capacity=self.capacity,
            pool_type=self.pool_type, redis_url=self.redis_url, max_len=self.max_len,
            max_expire_time=self.max_expire_time, local_mode=self.local_mode,
        ).start()
        self.port = self.server.port
        self.name = self.server.name
        _stop_at_exit(self.server)

    def _launch_subprocess(self) -> None:
        # This process's model configurations (agentnb.init) reach the server through its environment.
        self._started = start_server_process(
            self.token, host=self.host, port=self.port or 0, name=self.name, agent_classes=self.custom_agent_classes,
            extra_env=server_environment(), capacity=self.capacity, pool_type=self.pool_type,
            redis_url=self.redis_url, max_len=self.max_len, max_expire_time=self.max_expire_time,
            agent_dir=self.agent_dir, model_config_path=self.model_config_path, local_mode=self.local_mode,
            log_level=self.log_level or DEFAULT_LOG_LEVEL)
        self.process, self.port, self.name = self._started.process, self._started.port, self._started.name

    def wait_until_terminate(self) -> None:
        """Block until the server stops (SIGINT or SIGTERM stops it gracefully)."""
        if self.server is not None:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, lambda *_: threading.Thread(target=self.shutdown, daemon=True).start())
            while not self.server.wait(0.5):
                pass
        elif self.process is not None:
            self.process.wait()

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop the server, letting running calls finish for up to ``grace`` s."""
        if self.server is not None:
            self.server.stop(grace)
        if self._started is not None:
            self._started.shutdown(grace)
