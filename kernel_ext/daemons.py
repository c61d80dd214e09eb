"""DaemonRegistry: agent servers that outlive the kernel which started them.

A daemon is ``python -m agentnb.server`` in its own session (so a kernel's
interrupt, restart or shutdown does not reach it), with stdin from /dev/null
and its output in a log file. The server records itself (address, pid,
token, log file; 0600) in the per-user runtime directory, which is how a
restarted kernel or another notebook finds it again; a record whose pid is
gone is dropped when read. Stopping is SIGTERM (the server lets running calls
finish), then SIGKILL after a grace period.

A pool (``%agent_server start --replicas N --name lab``) is N daemons named
``lab-0`` ... ``lab-{N-1}``, each recorded as a member of pool ``lab``; the
pool's name stands for all of them in ``use``, ``stop``, ``status`` and ``logs``.

The registry keeps little of its own: the processes this kernel started (to
reap them) and which default it chose (to replace it once that daemon is
gone). Everything else is read from the runtime directory, and the default
daemon (or pool) is the one :func:`agentnb.rpc.placement.default_pool` gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pathlib
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from agentnb._proto import agentnb_pb2 as pb
from agentnb.config import server_environment
from agentnb.errors import AgentServerError
from agentnb.rpc.child_servers import spawn_server
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.placement import clear_default_server, default_pool, set_default_pool
from agentnb.rpc.server_pool import (
    ServerPool,
    gather,
    mark_replica,
    pool_of,
    recorded_pools,
    replica_name,
    run_together,
)
from agentnb.runtime_dir import (
    ServerRecord,
    _canonical_host,
    iter_records,
    pid_alive,
    read_record,
    remove_record,
    runtime_dir,
)
from kernel_ext.daemon_options import DaemonError, DaemonOptions, check_name

DAEMON_KIND = "daemon"
DEFAULT_STOP_GRACE = 10.0
KILL_WAIT = 5.0
INFO_TIMEOUT = 5.0
_POLL_INTERVAL = 0.05
_TAIL_CHUNK = 64 * 1024


@dataclass
class DaemonStatus:
    """A recorded server as seen now: its record and, if it answered, its live info."""

    record: ServerRecord
    info: pb.ServerInfo | None = None
    error: str = ""
    is_default: bool = False
    agents: list[pb.AgentDescription] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.info is not None

    @property
    def uptime(self) -> float:
        started = (self.info.started if self.info is not None else 0.0) or self.record.started
        return max(0.0, time.time() - started) if started else 0.0


def logs_dir() -> pathlib.Path:
    """The folder of daemon log files (inside the runtime directory, mode 0700)."""
    path = runtime_dir() / "logs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def log_path_for(name: str) -> pathlib.Path:
    return logs_dir() / f"{check_name(name)}.log"


def same_address(record: ServerRecord, host: str, port: int) -> bool:
    return record.port == int(port) and _canonical_host(record.host) == _canonical_host(host)


def _in_pool(record: ServerRecord, pool: ServerPool) -> bool:
    return any(same_address(record, replica.host, replica.port) for replica in pool.replicas)


def is_agent_server_process(pid: int) -> bool:
    """Whether ``pid`` runs an agentnb server (guards against a recycled pid in a stale record)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no such process; or no procfs to ask, and then the pid is all there is
        return pid_alive(pid) and not pathlib.Path("/proc/self").exists()
    return b"agentnb.server" in cmdline or b"as_server" in cmdline


class DaemonRegistry:
    """Starts, finds, describes, selects and stops this user's agent-server daemons.

    One registry per process is enough (``%load_ext agentnb`` makes it); the
    state it shares with other kernels lives in the runtime directory.
    """

    def __init__(self) -> None:
        self._processes: dict[int, subprocess.Popen] = {}
        self._chosen: ServerPool | None = None  # the default target this registry set

    # -- start -------------------------------------------------------------------------------

    def start(self, options: DaemonOptions | None = None, *, make_default: bool | None = None) -> ServerRecord:
        """Start a daemon and return its record once the server answers.

        Args:
            options: how to start it (see :class:`DaemonOptions`); with
                ``replicas`` above 1, use :meth:`start_pool`.
            make_default: place later ``to_dist()`` calls of this process on it;
                None (the default) does so when no default server is set yet.
        Raises:
            DaemonError: a wrong option, a name already in use, or a server that
                did not start (the message has the end of its log).
        """
        options = (options or DaemonOptions()).checked()
        if options.replicas != 1:
            raise DaemonError(f"{options.replicas} replicas make a pool: use DaemonRegistry.start_pool")
        with self._naming_lock():
            running = self.records()
            name = options.name or self._free_name(running)
            [record] = self._launch(options, [name], running)
        self._default_if(ServerPool.from_records([record], name), make_default, running)
        return record

    def start_pool(self, options: DaemonOptions, *, make_default: bool | None = None) -> list[ServerRecord]:
        """Start ``options.replicas`` daemons that act as one target, a pool named
        ``options.name`` (made up when None); return their records.

        The replicas are named ``NAME-0``, ``NAME-1``, ... (each an ordinary daemon,
        recorded as a member of pool NAME); as the default target, each new agent
        goes to the least loaded of them (see :mod:`agentnb.rpc.server_pool`).

        Raises:
            DaemonError: as :meth:`start`; if one replica does not start, none is left running.
        """
        options = options.checked()
        with self._naming_lock():
            running = self.records()
            name = options.name or self._free_name(running)
            self._check_free(name, running)
            names = [replica_name(name, i) for i in range(options.replicas)]
            records = self._launch(options, names, running)
            records = [mark_replica(r.name, name, i, len(names)) or r for i, r in enumerate(records)]
        self._default_if(ServerPool.from_records(records, name), make_default, running)
        return records

    @staticmethod
    def _check_free(name: str, running: list[ServerRecord]) -> None:
        """DaemonError if a server or a pool called ``name`` is among the ``running`` ones
        (or, for a pool, one of its replica names)."""
        found = next((r for r in running if r.name == name), None)
        address = f" at {found.address} (pid {found.pid})" if found is not None else ""
        if found is not None or name in recorded_pools(running):
            raise DaemonError(
                f"an agent server named {name!r} is already running{address}: `%agent_server use {name}` places "
                f"agents on it; `%agent_server stop {name}` stops it; or choose another --name"
            )

    def _launch(self, options: DaemonOptions, names: list[str], running: list[ServerRecord]) -> list[ServerRecord]:
        """Start one daemon per name at once; if any fails, stop the others and raise its DaemonError.

        ``running`` are the records read under the naming lock: none of them may have one of the names.
        """
        for name in names:
            self._check_free(name, running)
        token = secrets.token_urlsafe(32)
        records: list[ServerRecord | None] = [None] * len(names)

        def launch(i: int) -> None:
            records[i] = self._launch_one(options, names[i], token)

        errors = run_together([lambda i=i: launch(i) for i in range(len(names))])
        started = [r for r in records if r is not None]
        failure = next((e for e in errors if e is not None), None)
        if failure is not None:
            self._terminate(started, grace=1.0)
            raise failure
        return started

    def _launch_one(self, options: DaemonOptions, name: str, token: str) -> ServerRecord:
        log_path = log_path_for(name)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as log:
            try:
                # The kernel's model configs (agentnb.init) reach the daemon through its environment.
                process, port = spawn_server(options.server_args(name, str(log_path)), token,
                                             extra_env=server_environment(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
            except AgentServerError as exc:
                tail = self._read_tail(log_path, 20).rstrip()
                detail = f"\n--- end of {log_path} ---\n{tail}" if tail else ""
                raise DaemonError(f"the agent server {name!r} did not start: {exc}{detail}") from None
        self._processes[process.pid] = process
        record = read_record(name) or ServerRecord(
            name=name, host=options.host, port=port, pid=process.pid, token=token, kind=DAEMON_KIND,
            log_path=str(log_path), started=time.time(), capacity=options.capacity)
        try:
            ServerConnection.get(record.host, record.port, token).info(timeout=INFO_TIMEOUT)
        except (AgentServerError, TimeoutError) as exc:
            self._terminate([record], grace=1.0)
            raise DaemonError(f"the agent server {name!r} started but does not answer: {exc}") from None
        return record

    def _default_if(self, target: ServerPool, make_default: bool | None, running: list[ServerRecord]) -> None:
        if make_default or (make_default is None and self._no_live_default(running)):
            self._set_default(target)

    def _no_live_default(self, running: list[ServerRecord]) -> bool:
        """No default server, or only one this registry chose and that is not ``running`` (it has died)."""
        current = default_pool()
        if current is None:
            return True
        return current is self._chosen and not any(_in_pool(r, current) for r in running)

    def _set_default(self, target: ServerPool) -> None:
        # Detached: agents placed on a daemon stay there when their proxies go
        # (a rebound variable, %reset, a kernel restart), ready for get_agent().
        self._chosen = target
        set_default_pool(target, detached=True)

    @contextlib.contextmanager
    def _naming_lock(self) -> Iterator[None]:
        """Two kernels starting daemons at once must not pick the same name."""
        fd = os.open(runtime_dir() / "daemons.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _free_name(running: list[ServerRecord]) -> str:
        taken = {record.name for record in running} | set(recorded_pools(running))
        return next(name for name in (f"daemon-{i}" for i in itertools.count(1)) if name not in taken)

    # -- find and describe ------------------------------------------------------------------

    def records(self, daemons_only: bool = False) -> list[ServerRecord]:
        """The live servers recorded in the runtime directory, oldest first."""
        for pid, process in list(self._processes.items()):  # reap ours stopped from elsewhere
            if process.poll() is not None:
                self._processes.pop(pid, None)
        return [r for r in iter_records() if not daemons_only or r.kind == DAEMON_KIND]

    def get(self, name: str) -> ServerRecord:
        """The live record ``name``; DaemonError lists the running ones if there is none."""
        record = read_record(check_name(name))
        if record is None:
            names = ", ".join(r.name for r in self.records()) or "none"
            pools = "".join(f"; pool {pool}" for pool in recorded_pools())
            raise DaemonError(f"no agent server named {name!r} is running (running: {names}{pools})")
        return record

    def pool_members(self, name: str) -> list[ServerRecord]:
        """The live replicas of the pool ``name``, in index order (empty if there is no such pool)."""
        return recorded_pools().get(name, [])

    def members(self, name: str) -> list[ServerRecord]:
        """The servers ``name`` stands for: a pool's replicas, or the one server of that name."""
        return self.pool_members(name) or [self.get(name)]

    def default_name(self) -> str | None:
        """The name of the recorded server (or pool) this process places agents on, if any."""
        current = default_pool()
        if current is None:
            return None
        members = [r for r in self.records() if _in_pool(r, current)]
        pools = {pool_of(r) for r in members}
        if len(current) > 1 and len(pools) == 1 and None not in pools:
            return pools.pop()
        return members[0].name if members else None

    def statuses(self) -> list[DaemonStatus]:
        """Every live recorded server with the info it gives now (unreachable ones say why)."""
        default = default_pool()
        # At once: an unreachable server takes INFO_TIMEOUT to say so, and must not hold up the others.
        return gather([lambda r=record: self._status(r, default) for record in self.records()])

    def status(self, name: str) -> DaemonStatus:
        """One server's status, with the agents it hosts."""
        status = self._status(self.get(name), default_pool())
        if status.reachable:
            with contextlib.suppress(AgentServerError, TimeoutError):
                conn = ServerConnection.get(status.record.host, status.record.port, status.record.token)
                status.agents = conn.list_agents(timeout=INFO_TIMEOUT)
        return status

    @staticmethod
    def _status(record: ServerRecord, default: ServerPool | None) -> DaemonStatus:
        is_default = default is not None and _in_pool(record, default)
        try:
            info = ServerConnection.get(record.host, record.port, record.token).info(timeout=INFO_TIMEOUT)
        except (AgentServerError, TimeoutError) as exc:
            return DaemonStatus(record, None, str(exc), is_default)
        return DaemonStatus(record, info, "", is_default)

    def log_tail(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines of a daemon's log (also of one that has stopped)."""
        if lines < 0:
            raise DaemonError(f"-n must be 0 or more lines, got {lines}")
        record = read_record(check_name(name))
        path = pathlib.Path(record.log_path) if record is not None and record.log_path else log_path_for(name)
        if not path.is_file():
            if record is not None:
                raise DaemonError(f"the agent server {name!r} has no log file (it was not started "
                                  "with %agent_server start)")
            raise DaemonError(f"no agent server named {name!r} is running and it has no log file")
        return self._read_tail(path, lines)

    @staticmethod
    def _read_tail(path: pathlib.Path, lines: int) -> str:
        if lines == 0:
            return ""
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            start = end
            data = b""
            while start > 0 and data.count(b"\n") <= lines:
                start = max(0, start - _TAIL_CHUNK)
                f.seek(start)
                data = f.read(end - start)
        text = data.decode("utf-8", errors="replace")
        return "".join(text.splitlines(keepends=True)[-lines:])

    # -- choose ------------------------------------------------------------------------------

    def use(self, name: str | None) -> list[ServerRecord]:
        """Place this process's later ``to_dist()`` objects on daemon or pool ``name``
        (None: back to child servers). Returns its records (a pool's replicas)."""
        if name is None:
            clear_default_server()
            return []
        records = self.members(name)

        def check(record: ServerRecord) -> None:
            try:
                ServerConnection.get(record.host, record.port, record.token).info(timeout=INFO_TIMEOUT)
            except (AgentServerError, TimeoutError) as exc:
                raise DaemonError(f"the agent server {record.name!r} is recorded but does not answer: {exc}") from None

        gather([lambda r=record: check(r) for record in records])  # a pool's replicas at once
        self._set_default(ServerPool.from_records(records, name))
        return records

    # -- stop --------------------------------------------------------------------------------

    def stop(self, names: list[str], grace: float = DEFAULT_STOP_GRACE) -> list[str]:
        """Stop the named servers: SIGTERM, then SIGKILL after ``grace`` seconds.

        A pool's name stops all its replicas. Returns the names of the servers
        stopped. Raises DaemonError (before stopping any) if a name is not running.
        """
        records = {r.name: r for name in dict.fromkeys(names) for r in self.members(name)}
        return self._terminate(list(records.values()), grace)

    def stop_all(self, grace: float = DEFAULT_STOP_GRACE) -> list[str]:
        """Stop every daemon of this user (servers started otherwise are left alone)."""
        return self._terminate(self.records(daemons_only=True), grace)

    def _terminate(self, records: list[ServerRecord], grace: float) -> list[str]:
        if grace < 0:
            raise DaemonError(f"--grace must be 0 or more seconds, got {grace}")
        signalled = []
        for record in records:
            self._forget(record)
            if is_agent_server_process(record.pid) and self._signal(record.pid, signal.SIGTERM):
                signalled.append(record)
        deadline = time.monotonic() + grace
        stubborn = [r for r in signalled if not self._wait_gone(r.pid, deadline)]
        for record in stubborn:
            self._signal(record.pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + KILL_WAIT
        alive = [r.name for r in stubborn if not self._wait_gone(r.pid, kill_deadline)]
        for record in records:
            remove_record(record.name, record.pid)
        self._drop_dead_default(records)
        if alive:
            raise DaemonError(f"agent server(s) {', '.join(alive)} did not exit even after SIGKILL")
        return [record.name for record in records]

    def _forget(self, record: ServerRecord) -> None:
        """This process stops talking to ``record``'s server (a pool skips a replica it cannot reach)."""
        current = default_pool()
        if current is not None and len(current) == 1 and _in_pool(record, current):
            clear_default_server()
        ServerConnection.get(record.host, record.port, record.token).close()

    def _drop_dead_default(self, stopped: list[ServerRecord]) -> None:
        """Back to child servers once every replica of the default pool is stopped."""
        current = default_pool()
        if (current is not None and any(_in_pool(r, current) for r in stopped)
                and not any(_in_pool(r, current) for r in self.records())):
            clear_default_server()

    @staticmethod
    def _signal(pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):  # gone, or a recycled pid of another user
            return False
        return True

    def _wait_gone(self, pid: int, deadline: float) -> bool:
        process = self._processes.get(pid)
        if process is not None:  # our own child: wait() also reaps it
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
            self._processes.pop(pid, None)
            return True
        while pid_alive(pid):  # not our child: nothing to wait on but the pid itself
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)
        return True
