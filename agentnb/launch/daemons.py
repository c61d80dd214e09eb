"""Daemon processes: agent servers that outlive the process which started them.

A daemon is ``python -m agentnb.server`` in its own session (so a kernel's
interrupt, restart or shutdown does not reach it), with stdin from /dev/null
and its output in a log file. The server records itself (address, pid,
token, log file; 0600) in the per-user runtime directory, which is how a
restarted kernel or another notebook finds it again; a record whose pid is
gone is dropped when read. Stopping is SIGTERM (the server lets running calls
finish), then SIGKILL after a grace period.

This module handles the processes only: it never talks to a server. Finding,
describing and choosing daemons is :class:`agentnb.cluster.DaemonRegistry`'s part.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import pathlib
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

from agentnb.concurrently import run_together
from agentnb.config import server_environment
from agentnb.errors import AgentServerError, DaemonError
from agentnb.launch.command import spawn_server
from agentnb.launch.daemon_options import DEFAULT_STOP_GRACE, DaemonOptions, check_name
from agentnb.runtime_dir import ServerRecord, pid_alive, read_record, recorded_pools, remove_record, runtime_dir

DAEMON_KIND = "daemon"
__all__ = ["DAEMON_KIND", "DEFAULT_STOP_GRACE", "DaemonProcesses", "check_free", "free_name", "is_agent_server_process",
           "log_path_for", "log_tail", "logs_dir", "naming_lock", "read_tail"]
KILL_WAIT = 5.0
_POLL_INTERVAL = 0.05
_TAIL_CHUNK = 64 * 1024


def logs_dir() -> pathlib.Path:
    """The folder of daemon log files (inside the runtime directory, mode 0700)."""
    path = runtime_dir() / "logs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def log_path_for(name: str) -> pathlib.Path:
    return logs_dir() / f"{check_name(name)}.log"


def is_agent_server_process(pid: int) -> bool:
    """Whether ``pid`` runs an agentnb server (guards against a recycled pid in a stale record)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no such process; or no procfs to ask, and then the pid is all there is
        return pid_alive(pid) and not pathlib.Path("/proc/self").exists()
    return b"agentnb.server" in cmdline or b"as_server" in cmdline


@contextlib.contextmanager
def naming_lock() -> Iterator[None]:
    """Held while a name is chosen and its daemon started: two kernels must not pick the same name."""
    fd = os.open(runtime_dir() / "daemons.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def free_name(running: list[ServerRecord]) -> str:
    """The first of ``daemon-1``, ``daemon-2``, ... that no running server or pool has."""
    taken = {record.name for record in running} | set(recorded_pools(running))
    return next(name for name in (f"daemon-{i}" for i in itertools.count(1)) if name not in taken)


def check_free(name: str, running: list[ServerRecord]) -> None:
    """DaemonError if a server or a pool called ``name`` is among the ``running`` ones."""
    found = next((r for r in running if r.name == name), None)
    address = f" at {found.address} (pid {found.pid})" if found is not None else ""
    if found is not None or name in recorded_pools(running):
        raise DaemonError(
            f"an agent server named {name!r} is already running{address}: `%agent_server use {name}` places "
            f"agents on it; `%agent_server stop {name}` stops it; or choose another --name"
        )


def read_tail(path: pathlib.Path, lines: int) -> str:
    """The last ``lines`` lines of the file at ``path``."""
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


def log_tail(name: str, lines: int = 50) -> str:
    """The last ``lines`` lines of daemon ``name``'s log (also of one that has stopped)."""
    if lines < 0:
        raise DaemonError(f"-n must be 0 or more lines, got {lines}")
    record = read_record(check_name(name))
    path = pathlib.Path(record.log_path) if record is not None and record.log_path else log_path_for(name)
    if not path.is_file():
        if record is not None:
            raise DaemonError(f"the agent server {name!r} has no log file (it was not started "
                              "with %agent_server start)")
        raise DaemonError(f"no agent server named {name!r} is running and it has no log file")
    return read_tail(path, lines)


class DaemonProcesses:
    """Starts and stops daemon processes; keeps the ones this process started, to reap them."""

    def __init__(self) -> None:
        self._processes: dict[int, subprocess.Popen] = {}

    def reap(self) -> None:
        """Forget the processes of ours that have ended (stopped from elsewhere)."""
        for pid, process in list(self._processes.items()):
            if process.poll() is not None:
                self._processes.pop(pid, None)

    def start(self, options: DaemonOptions, names: list[str], running: list[ServerRecord]) -> list[ServerRecord]:
        """Start one daemon per name, at once, sharing one new token; return their records.

        ``running`` are the records read under :func:`naming_lock`: none may have one of
        the names. If any fails, the others are stopped and its DaemonError raised.
        """
        for name in names:
            check_free(name, running)
        token = secrets.token_urlsafe(32)
        records: list[ServerRecord | None] = [None] * len(names)

        def launch(i: int) -> None:
            records[i] = self._start_one(options, names[i], token)

        errors = run_together([functools.partial(launch, i) for i in range(len(names))])
        started = [r for r in records if r is not None]
        failure = next((e for e in errors if e is not None), None)
        if failure is not None:
            self.terminate(started, grace=1.0)
            raise failure
        return started

    def _start_one(self, options: DaemonOptions, name: str, token: str) -> ServerRecord:
        log_path = log_path_for(name)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as log:
            try:
                # The caller's model configs (agentnb.init) reach the daemon through its environment.
                host = options.listen_host(name)
                process, port = spawn_server(options.server_args(name, str(log_path), host), token,
                                             extra_env=server_environment(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
            except AgentServerError as exc:
                tail = read_tail(log_path, 20).rstrip()
                detail = f"\n--- end of {log_path} ---\n{tail}" if tail else ""
                raise DaemonError(f"the agent server {name!r} did not start: {exc}{detail}") from None
        self._processes[process.pid] = process
        return read_record(name) or ServerRecord(
            name=name, host=host, port=port, pid=process.pid, token=token, kind=DAEMON_KIND,
            log_path=str(log_path), started=time.time(), capacity=options.capacity)

    def terminate(self, records: list[ServerRecord], grace: float) -> list[str]:
        """SIGTERM the servers of ``records``, SIGKILL those still there after ``grace`` s;
        remove their records. Returns their names; DaemonError if one survives SIGKILL."""
        if grace < 0:
            raise DaemonError(f"--grace must be 0 or more seconds, got {grace}")
        signalled = [r for r in records if is_agent_server_process(r.pid) and _signal(r.pid, signal.SIGTERM)]
        deadline = time.monotonic() + grace
        stubborn = [r for r in signalled if not self._wait_gone(r.pid, deadline)]
        for record in stubborn:
            _signal(record.pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + KILL_WAIT
        alive = [r.name for r in stubborn if not self._wait_gone(r.pid, kill_deadline)]
        for record in records:
            remove_record(record.name, record.pid)
        if alive:
            raise DaemonError(f"agent server(s) {', '.join(alive)} did not exit even after SIGKILL")
        return [record.name for record in records]

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


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):  # gone, or a recycled pid of another user
        return False
    return True
