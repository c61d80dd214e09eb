"""What a cluster launcher is given and gives back: the servers to start, and the servers started.

The launchers themselves, and how one is chosen by name, are :mod:`agentnb.launch.launchers`.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from agentnb.runtime_dir import ServerRecord

ArgsFor = Callable[[str], list[str]]


class LaunchedServers(Protocol):
    """Servers a cluster launcher started, where they run, and how to stop them."""

    records: list[ServerRecord]

    def covers(self, host: str, port: int) -> bool:
        """Whether the server at ``host:port`` is one of these."""
        ...

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop every one of them (running calls get ``grace`` seconds) and release what the engine holds."""
        ...


class OwnLaunches:
    """The servers a launcher started from this process and has not stopped yet.

    At exit, those of this process's own pools (``start_pool``; not daemons, which outlive it)
    are stopped, with a short grace.
    """

    def __init__(self) -> None:
        self._live: set[LaunchedServers] = set()
        atexit.register(self._stop_own)

    def add(self, servers: LaunchedServers) -> None:
        self._live.add(servers)

    def discard(self, servers: LaunchedServers) -> None:
        self._live.discard(servers)

    def _stop_own(self) -> None:
        for servers in list(self._live):
            with contextlib.suppress(Exception):
                if servers.records and all(record.kind != "daemon" for record in servers.records):
                    servers.shutdown(grace=1.0)


@dataclass(frozen=True)
class ServerSpec:
    """What each server of a pool runs, whatever starts it.

    Attributes:
        args_for: the options of ``python -m agentnb.server`` for the replica of a given
            name (from :func:`agentnb.launch.command.server_argv`); the launcher adds
            where it listens.
        token: the pool's token; it reaches the servers privately, never on a command line.
        extra_env: environment the servers get (e.g. this process's model configurations).
        record_kind: ``daemon`` (found and stopped by name from any process) or ``server``.
    """

    args_for: ArgsFor
    token: str = field(repr=False)
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    record_kind: str = "server"


class ClusterLauncher(Protocol):
    """Starts the servers of a pool on a cluster engine."""

    name: ClassVar[str]

    def start(self, pool_name: str, names: Sequence[str], spec: ServerSpec, first_index: int = 0) -> LaunchedServers:
        """Start one server per name (replicas ``first_index``, ``first_index + 1``, ... of pool
        ``pool_name``); return them once each listens.

        Raises:
            AgentServerError: they did not all start (none is left running); the message says why.
        """
        ...
