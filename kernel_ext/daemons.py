"""DaemonRegistry: agent servers that outlive the kernel which started them.

A daemon is ``python -m agentnb.server`` in its own session (so a kernel's
interrupt, restart or shutdown does not reach it), with stdin from /dev/null
and its output in a log file. The server records itself (address, pid,
token, log file; 0600) in the per-user runtime directory, which is how a
restarted kernel or another notebook finds it again; a record whose pid is
gone is dropped when read. Stopping is SIGTERM (the server lets running calls
finish), then SIGKILL after a grace period.

The registry keeps little of its own: the processes this kernel started (to
reap them) and which default it chose (to replace it once that daemon is
gone). Everything else is read from the runtime directory, and the default
daemon is the one :func:`agentnb.set_default_server` points at.
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
from agentnb.rpc.placement import clear_default_server, default_server, set_default_server
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
        self._chosen: tuple[str, int, str] | None = None  # the default server this registry set

    # -- start -------------------------------------------------------------------------------

    def start(self, options: DaemonOptions | None = None, *, make_default: bool | None = None) -> ServerRecord:
        """Start a daemon and return its record once the server answers.

        Args:
            options: how to start it (see :class:`DaemonOptions`).
            make_default: place later ``to_dist()`` calls of this process on it;
                None (the default) does so when no default server is set yet.
        Raises:
            DaemonError: a wrong option, a name already in use, or a server that
                did not start (the message has the end of its log).
        """
        options = (options or DaemonOptions()).checked()
        token = secrets.token_urlsafe(32)
        with self._naming_lock():
            name = options.name or self._free_name()
            running = read_record(name)
            if running is not None:
                raise DaemonError(
                    f"an agent server named {name!r} is already running at {running.address} "
                    f"(pid {running.pid}): `%agent_server use {name}` places agents on it; "
                    f"`%agent_server stop {name}` stops it; or choose another --name"
                )
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
        if make_default or (make_default is None and self._no_live_default()):
            self._set_default(record)
        return record

    def _no_live_default(self) -> bool:
        """No default server, or only one this registry chose and that has died since."""
        current = default_server()
        if current is None:
            return True
        return current == self._chosen and not any(same_address(r, *current[:2]) for r in self.records())

    def _set_default(self, record: ServerRecord) -> None:
        # Detached: agents placed on a daemon stay there when their proxies go
        # (a rebound variable, %reset, a kernel restart), ready for get_agent().
        self._chosen = (record.host, record.port, record.token)
        set_default_server(*self._chosen, detached=True)

    @contextlib.contextmanager
    def _naming_lock(self) -> Iterator[None]:
        """Two kernels starting daemons at once must not pick the same name."""
        fd = os.open(runtime_dir() / "daemons.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _free_name(self) -> str:
        taken = {record.name for record in iter_records()}
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
            raise DaemonError(f"no agent server named {name!r} is running (running: {names})")
        return record

    def default_name(self) -> str | None:
        """The name of the recorded server this process places agents on, if any."""
        current = default_server()
        if current is None:
            return None
        return next((r.name for r in self.records() if same_address(r, current[0], current[1])), None)

    def statuses(self) -> list[DaemonStatus]:
        """Every live recorded server with the info it gives now (unreachable ones say why)."""
        default = default_server()
        return [self._status(record, default) for record in self.records()]

    def status(self, name: str) -> DaemonStatus:
        """One server's status, with the agents it hosts."""
        status = self._status(self.get(name), default_server())
        if status.reachable:
            with contextlib.suppress(AgentServerError, TimeoutError):
                conn = ServerConnection.get(status.record.host, status.record.port, status.record.token)
                status.agents = conn.list_agents(timeout=INFO_TIMEOUT)
        return status

    @staticmethod
    def _status(record: ServerRecord, default: tuple[str, int, str] | None) -> DaemonStatus:
        is_default = default is not None and same_address(record, default[0], default[1])
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

    def use(self, name: str | None) -> ServerRecord | None:
        """Place this process's later ``to_dist()`` objects on daemon ``name``
        (None: back to child servers). Returns its record."""
        if name is None:
            clear_default_server()
            return None
        record = self.get(name)
        try:
            ServerConnection.get(record.host, record.port, record.token).info(timeout=INFO_TIMEOUT)
        except (AgentServerError, TimeoutError) as exc:
            raise DaemonError(f"the agent server {name!r} is recorded but does not answer: {exc}") from None
        self._set_default(record)
        return record

    # -- stop --------------------------------------------------------------------------------

    def stop(self, names: list[str], grace: float = DEFAULT_STOP_GRACE) -> list[str]:
        """Stop the named servers: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns the names stopped. Raises DaemonError (before stopping any) if a
        name is not running.
        """
        records = [self.get(name) for name in dict.fromkeys(names)]
        return self._terminate(records, grace)

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
        if alive:
            raise DaemonError(f"agent server(s) {', '.join(alive)} did not exit even after SIGKILL")
        return [record.name for record in records]

    def _forget(self, record: ServerRecord) -> None:
        """This process stops placing agents on, and talking to, ``record``'s server."""
        current = default_server()
        if current is not None and same_address(record, current[0], current[1]):
            clear_default_server()
        ServerConnection.get(record.host, record.port, record.token).close()

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
