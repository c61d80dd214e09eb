"""The per-user runtime directory: where running servers are recorded.

Each server that is not a child of one process writes a small JSON record
(name, address, pid and its start time, token, log file) here, readable only
by its user (0600 in a 0700 folder). Clients find a server's token here, and a
restarted kernel finds its daemons again. A record is trusted only while the
process that wrote it runs: a pid that is gone, or now belongs to another user
or to a later process, makes it stale, and it is removed when read.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from agentnb.runtime_home import (
    ENV_DIR,
    LOOPBACK_HOSTS,
    canonical_host,
    is_unix,
    runtime_dir,
    server_address,
    server_display,
)

__all__ = ["ENV_DIR", "LOOPBACK_HOSTS", "ServerRecord", "canonical_host", "find_record", "find_token", "is_unix",
           "iter_records", "mark_replica", "pid_alive", "process_started", "read_record", "recorded_pools",
           "remove_record", "replica_name", "runtime_dir", "server_address", "this_node", "write_record"]

# In ServerRecord.extra of a pool's replica: the pool's name, its index, how many replicas.
POOL_KEY, REPLICA_KEY, REPLICAS_KEY = "pool", "replica", "replicas"
# In ServerRecord.extra: the machine the server runs on (it writes it), and, for a server a cluster
# launcher started, that launcher's name and its handle there (e.g. ``job 12`` for Slurm).
NODE_KEY, LAUNCHER_KEY, HANDLE_KEY = "node", "launcher", "handle"
# In ServerRecord.extra of a daemon pool's replica: the options it was started with (to start more alike).
OPTIONS_KEY = "options"


def this_node() -> str:
    """This machine's name, as a server records where it runs."""
    return socket.gethostname()


@dataclass
class ServerRecord:
    """What a running server tells its user's other processes about itself."""

    name: str
    host: str
    port: int
    pid: int
    token: str = field(repr=False)
    kind: str = "server"  # "server" (as_server / launcher) or "daemon" (%agent_server)
    log_path: str = ""
    started: float = 0.0
    capacity: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # When the process ``pid`` started (clock ticks since boot): a later process given the
    # same pid is not the one that wrote the record. Filled in by write_record.
    pid_started: int = 0

    @property
    def address(self) -> str:
        """``unix:<path>`` or ``host:port`` (see :func:`agentnb.runtime_home.server_address`)."""
        return server_address(self.host, self.port)

    @property
    def display(self) -> str:
        """How the server is shown, e.g. ``agent server 'lab' at unix:/…/lab.sock``."""
        return server_display(self.address, self.name)

    @property
    def pool(self) -> str | None:
        """The name of the server pool this server is a replica of, if any."""
        name = self.extra.get(POOL_KEY) if isinstance(self.extra, dict) else None
        return name if isinstance(name, str) else None

    @property
    def replica(self) -> int:
        """Its index among its pool's replicas (0 for a lone server)."""
        return int(self.extra.get(REPLICA_KEY, 0)) if self.pool is not None else 0

    @property
    def replicas(self) -> int:
        """How many replicas its pool has (1 for a lone server)."""
        return int(self.extra.get(REPLICAS_KEY, 1)) if self.pool is not None else 1

    @property
    def node(self) -> str:
        """The machine the server runs on (empty in records of servers that did not say)."""
        node = self.extra.get(NODE_KEY, "") if isinstance(self.extra, dict) else ""
        return node if isinstance(node, str) else ""

    @property
    def launcher(self) -> str:
        """What started it on a cluster (``slurm``), or ``local``."""
        name = self.extra.get(LAUNCHER_KEY) if isinstance(self.extra, dict) else None
        return name if isinstance(name, str) else "local"

    @property
    def where(self) -> str:
        """Where it runs, as listings show it (``node01 (slurm job 12)``, or the node alone)."""
        handle = self.extra.get(HANDLE_KEY, "") if isinstance(self.extra, dict) else ""
        return f"{self.node} ({self.launcher} {handle})" if handle else self.node

    @property
    def elsewhere(self) -> bool:
        """Whether it runs on another machine (then its pid says nothing here)."""
        return bool(self.node) and self.node != this_node()

    def is_at(self, host: str, port: int) -> bool:
        """Whether this server listens at ``host:port`` (loopback names are one host)."""
        return self.port == int(port) and canonical_host(self.host) == canonical_host(host)


def _record_path(name: str) -> pathlib.Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid server name {name!r}")
    return runtime_dir() / "servers" / f"{name}.json"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    return True


def process_started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), if it is alive, not a zombie,
    and this user's; else None. Where there is no procfs, 0 for any live process."""
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no procfs here: the pid is all there is to go by
        return 0 if pid_alive(pid) else None
    if owner != os.getuid() or fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of stat(5), counted after the command's closing parenthesis


def _is_writer_alive(record: ServerRecord) -> bool:
    """Whether the process that wrote ``record`` still runs: its pid is alive, is this
    user's, and started when the record says (not a later process given the same pid).

    A server on another machine cannot be checked from here, and a cluster launcher's is
    the engine's to account for (a server killed with its node is listed with what the
    engine says, e.g. ``slurm job 12 ended: NODE_FAIL``): such a record stands until its
    launcher's stop removes it, or the server's own stop does.
    """
    if record.elsewhere or record.launcher != "local":
        return True
    if record.pid <= 0:
        return False
    started = process_started(record.pid)
    return started is not None and (started == record.pid_started or not started or not record.pid_started)


def write_record(record: ServerRecord) -> pathlib.Path:
    """Write ``record`` atomically, readable by its owner only (with its process's start time)."""
    if not record.pid_started:
        record.pid_started = process_started(record.pid) or 0
    path = _record_path(record.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(record), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_record(name: str, pid: int | None = None) -> None:
    """Remove the record ``name`` (only if it still belongs to ``pid``, when given)."""
    path = _record_path(name)
    if pid is not None:
        record = _load(path)
        if record is not None and record.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _load(path: pathlib.Path) -> ServerRecord | None:
    try:
        data = json.loads(path.read_text())
        return ServerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def read_record(name: str) -> ServerRecord | None:
    """The live record called ``name``, or None (a stale one is removed).

    A record is live while the process that wrote it runs; a pid now taken by a
    process of another user, or by a later process, makes it stale.
    """
    path = _record_path(name)
    record = _load(path)
    if record is None:
        return None
    if not _is_writer_alive(record):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    return record


def iter_records() -> Iterator[ServerRecord]:
    """Every live server record of this user, oldest first; stale ones are removed."""
    records = []
    for path in (runtime_dir() / "servers").glob("*.json"):
        record = read_record(path.stem)
        if record is not None:
            records.append(record)
    yield from sorted(records, key=lambda r: (r.started, r.name))


def find_record(host: str, port: int) -> ServerRecord | None:
    """The live record of the server at ``host:port``, if it is recorded."""
    return next((record for record in iter_records() if record.is_at(host, port)), None)


def find_token(host: str, port: int) -> str | None:
    """The token of the live server recorded at ``host:port``, if any."""
    record = find_record(host, port)
    return record.token if record is not None else None


def replica_name(pool_name: str, index: int) -> str:
    """The record name of replica ``index`` of pool ``pool_name``."""
    return f"{pool_name}-{index}"


def mark_replica(record_name: str, pool_name: str, index: int, count: int, **extra: Any) -> ServerRecord | None:
    """Note in the record of server ``record_name`` that it is replica ``index`` of ``count`` of a pool
    (and the ``extra`` items, e.g. what launched it)."""
    record = read_record(record_name)
    if record is not None:
        record.extra = {**record.extra, **extra, POOL_KEY: pool_name, REPLICA_KEY: index, REPLICAS_KEY: count}
        write_record(record)
    return record


def recorded_pools(records: Iterable[ServerRecord] | None = None) -> dict[str, list[ServerRecord]]:
    """Every pool recorded in this user's runtime directory: its live replicas, in index order.

    Args:
        records: the records to look through, when the caller has just read
            them (:func:`iter_records`); by default, read them now.
    """
    pools: dict[str, list[ServerRecord]] = {}
    for record in iter_records() if records is None else records:
        if record.pool is not None:
            pools.setdefault(record.pool, []).append(record)
    for members in pools.values():
        members.sort(key=lambda r: r.replica)
    return pools
