"""DaemonOptions: how to start one agent-server daemon, checked before anything runs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

from agentnb.errors import DaemonError
from agentnb.launch import launcher_flags
from agentnb.launch.command import DEFAULT_LOG_LEVEL, LOG_LEVELS, check_log_level, server_argv
from agentnb.launch.launchers import LAUNCHERS, LOCAL, check_launcher
from agentnb.runtime_dir import LOOPBACK_HOSTS
from agentnb.runtime_home import socket_host

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
POOL_TYPES = ("local", "redis")
DEFAULT_HOST = "localhost"
DEFAULT_CAPACITY = 32
MAX_REPLICAS = 64
DEFAULT_STOP_GRACE = 10.0  # seconds a stopped daemon's running calls get before SIGKILL


def check_name(name: str) -> str:
    """Return ``name`` if it can name a daemon (its record and log file); raise DaemonError if not."""
    if not NAME_PATTERN.match(name):
        raise DaemonError(
            f"invalid daemon name {name!r}: use 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class DaemonOptions:
    """The settings of ``%agent_server start`` (all optional).

    Attributes:
        name: the daemon's name; made up (``daemon-1``, ...) when None.
        host: the loopback interface the server binds; by default (and no ``port``), a
            Unix socket in the runtime directory instead (see :meth:`listen_host`).
        port: the port; 0 picks a free one.
        capacity: agent calls the server runs at once.
        pool_type: where results are kept: ``local`` or ``redis``.
        redis_url: the Redis server, with ``pool_type="redis"``.
        max_expire_time: seconds a result is kept (None: the server's default).
        max_len: results kept at most by the local pool (None: the server's default).
        model_config_path: a JSON file of model configurations for the server.
        replicas: how many servers; above 1 they form a pool that acts as one
            target (see :meth:`agentnb.DaemonRegistry.start_pool`).
        log_level: what the server's log file records: ``INFO`` (the default) has
            its start and stop, clients, agents created and deleted, and every
            failed or cancelled call; ``DEBUG`` adds every successful call;
            ``WARNING`` and ``ERROR`` keep only problems.
        launcher: what starts the servers: ``local`` (processes of this machine),
            ``slurm`` (a Slurm job; see :mod:`agentnb.launch.slurm`) or ``ray`` (Ray actors;
            see :mod:`agentnb.launch.ray_launcher`).
        launcher_options: the cluster launcher's options (e.g. ``{"partition": "debug"}`` or
            ``{"address": "auto", "servers_per_node": 2}``).
    """

    POOL_TYPES: ClassVar[tuple[str, ...]] = POOL_TYPES
    LOG_LEVELS: ClassVar[tuple[str, ...]] = LOG_LEVELS
    LAUNCHERS: ClassVar[tuple[str, ...]] = LAUNCHERS
    DEFAULT_STOP_GRACE: ClassVar[float] = DEFAULT_STOP_GRACE
    # The command line of a start (``%agent_server start``, ``as_server start``): see agentnb.launch.launcher_flags.
    add_launcher_arguments = staticmethod(launcher_flags.add_launcher_arguments)
    launcher_options_of = staticmethod(launcher_flags.launcher_options)
    number_type = staticmethod(launcher_flags.number_type)

    name: str | None = None
    host: str = DEFAULT_HOST
    port: int = 0
    capacity: int = DEFAULT_CAPACITY
    pool_type: str = "local"
    redis_url: str | None = None
    max_expire_time: float | None = None
    max_len: int | None = None
    model_config_path: str | None = None
    replicas: int = 1
    log_level: str = DEFAULT_LOG_LEVEL
    launcher: str = LOCAL
    launcher_options: Mapping[str, Any] = field(default_factory=dict)

    def checked(self) -> DaemonOptions:
        """These options with paths made absolute; DaemonError names the first wrong one."""
        if self.name is not None:
            check_name(self.name)
        if self.host not in LOOPBACK_HOSTS:
            raise DaemonError(
                f"--host {self.host!r}: a daemon binds a loopback address ({', '.join(LOOPBACK_HOSTS)}); to serve "
                "other machines, run `as_server start --no-local-mode` with its TLS options yourself"
            )
        if not 0 <= self.port < 65536:
            raise DaemonError(f"--port must be between 0 (a free port) and 65535, got {self.port}")
        if self.capacity < 1:
            raise DaemonError(f"--capacity must be at least 1, got {self.capacity}")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise DaemonError(f"--replicas must be between 1 and {MAX_REPLICAS}, got {self.replicas}")
        if self.replicas > 1 and self.port:
            raise DaemonError(f"--port {self.port}: the {self.replicas} replicas of a pool each take a free port; "
                              "leave --port out")
        if self.pool_type not in POOL_TYPES:
            raise DaemonError(f"--pool-type must be one of {', '.join(POOL_TYPES)}, got {self.pool_type!r}")
        if self.pool_type == "redis" and not self.redis_url:
            raise DaemonError("--pool-type redis needs --redis-url (e.g. redis://localhost:6379)")
        if self.redis_url and self.pool_type != "redis":
            raise DaemonError("--redis-url is only used with --pool-type redis")
        if self.max_expire_time is not None and self.max_expire_time <= 0:
            raise DaemonError(f"--max-expire-time must be a positive number of seconds, got {self.max_expire_time}")
        if self.max_len is not None and self.max_len < 1:
            raise DaemonError(f"--max-len must be at least 1, got {self.max_len}")
        if self.max_len is not None and self.pool_type != "local":
            raise DaemonError("--max-len only applies to --pool-type local (Redis results expire by time)")
        try:
            log_level = check_log_level(self.log_level)
        except ValueError:
            raise DaemonError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}") from None
        try:
            check_launcher(self.launcher, self.launcher_options)
        except ValueError as exc:
            raise DaemonError(f"--launcher {self.launcher}: {exc}") from None
        if self.launcher != LOCAL and (self.host != DEFAULT_HOST or self.port):
            raise DaemonError(f"--host and --port choose a local daemon's address; the {self.launcher} launcher's "
                              "servers each listen on a free port of their node")
        model_config_path = self.model_config_path
        if model_config_path is not None:
            model_config_path = os.path.abspath(os.path.expanduser(model_config_path))
            if not os.path.isfile(model_config_path):
                raise DaemonError(f"--model-config-path {self.model_config_path!r} is not a file")
        return replace(self, model_config_path=model_config_path, log_level=log_level)

    def to_record(self) -> dict[str, Any]:
        """These options as a pool's records keep them (JSON), so that another process can start
        more replicas alike (:meth:`from_record`)."""
        data = asdict(self)
        data["launcher_options"] = dict(self.launcher_options)
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> DaemonOptions:
        """The options :meth:`to_record` kept (keys of another version are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def listen_host(self, name: str) -> str:
        """Where daemon ``name`` listens: a Unix socket in the runtime directory (no other user can
        reach it) unless a port was asked for, or the socket cannot be had; else ``host``."""
        if self.port == 0 and self.host == DEFAULT_HOST:
            return socket_host(name) or self.host
        return self.host

    def server_args(self, name: str, log_path: str, host: str | None = None) -> list[str]:
        """The command line of ``python -m agentnb.server`` for a daemon called ``name`` listening on ``host``."""
        return server_argv(host=host or self.host, port=self.port, capacity=self.capacity, pool_type=self.pool_type,
                           name=name, redis_url=self.redis_url, max_len=self.max_len,
                           max_expire_time=self.max_expire_time, model_config_path=self.model_config_path,
                           record_kind="daemon", log_path=log_path, log_level=self.log_level)
