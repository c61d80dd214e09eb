"""The Slurm launcher: the servers of a pool as the steps of one Slurm job.

``sbatch`` submits one job of N tasks; its script starts each server with
``srun`` as a step of one task (``python -m agentnb.server``, bound to its
node's name, beyond loopback: its token guards it). The token reaches the
servers through a 0600 file in the runtime directory that the job script reads
into their environment (never a command line, nor the job's recorded
environment); the file is removed once they listen. Each server writes its
record (address, node) in the runtime directory, which the cluster's nodes share
with this machine (a home directory on a shared file system, as Slurm sites
have): that is how the launcher learns where they listen.

A pool that grows (:meth:`agentnb.ServerPool.scale`) submits one more job for its new servers;
stopping the pool cancels every job of it. Stopping is ``scancel``: Slurm sends the steps
SIGTERM (a server lets its running calls finish for its ``--grace``), then SIGKILL after its
KillWait. A job that
Slurm ends before its servers listen (time limit, preemption, a node failure, a
wrong partition) is reported with its state and reason, not waited on.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from agentnb.errors import AgentServerError
from agentnb.launch.command import ENV_TOKEN, import_path
from agentnb.launch.launched import OwnLaunches, ServerSpec
from agentnb.runtime_dir import (
    HANDLE_KEY,
    LAUNCHER_KEY,
    ServerRecord,
    mark_replica,
    read_record,
    remove_record,
    runtime_dir,
)
from agentnb.runtime_home import ENV_DIR

NAME = "slurm"
COMMAND_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
STATE_INTERVAL = 1.0  # how often a starting pool asks Slurm about its job
# How long scancel's SIGKILL may take to come after its SIGTERM (Slurm's KillWait is 30 s by default).
KILL_WAIT = 40.0
PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED")
RUNNING_STATES = ("RUNNING", "COMPLETING", *PENDING_STATES)
_TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^UNLIMITED$|^INFINITE$")
_MEM_PATTERN = re.compile(r"^\d+[KMGT]?$")


def _slurm_command(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise AgentServerError(f"the slurm launcher needs Slurm's `{command}` on PATH (with sbatch, squeue, "
                               "scontrol and scancel): run it on a machine that submits Slurm jobs")
    return path


def _run(command: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([_slurm_command(command), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          stdin=subprocess.DEVNULL, env=None if env is None else dict(env))


def slurm_dir() -> pathlib.Path:
    """The folder of job scripts, token files and job logs (in the 0700 runtime directory)."""
    path = runtime_dir() / "slurm"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass(frozen=True)
class SlurmLauncher:
    """How the servers' job is submitted (each attribute an option of ``start_pool(launcher="slurm", ...)``).

    Attributes:
        partition: the partition (``--partition``); the cluster's default when None.
        time: the job's time limit (``--time``: minutes, ``HH:MM:SS`` or ``D-HH:MM:SS``); the partition's when None.
        cpus_per_server: CPUs each server gets (``--cpus-per-task``).
        mem_per_server: memory each server gets (``--mem`` of its step, e.g. ``2G``); the site's default when None.
        sbatch_lines: more ``#SBATCH`` lines (e.g. ``--account=lab`` or ``#SBATCH --qos=short``).
        start_timeout: seconds the servers may take to listen, waiting in the queue included.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("partition", "time", "cpus_per_server", "mem_per_server", "sbatch_lines",
                                          "start_timeout")
    name: ClassVar[str] = NAME

    partition: str | None = None
    time: str | None = None
    cpus_per_server: int = 1
    mem_per_server: str | None = None
    sbatch_lines: tuple[str, ...] = ()
    start_timeout: float = 300.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SlurmLauncher:
        """The launcher of ``options``; ValueError names an unknown option (and the known ones) or a wrong value."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown option(s) for the slurm launcher: {', '.join(unknown)}; "
                             f"it takes {', '.join(cls.OPTIONS)}")
        values = dict(options)
        lines = values.get("sbatch_lines", ())
        values["sbatch_lines"] = (lines,) if isinstance(lines, str) else tuple(lines)
        launcher = cls(**values)
        launcher.check()
        return launcher

    def check(self) -> None:
        if not isinstance(self.cpus_per_server, int) or self.cpus_per_server < 1:
            raise ValueError(f"slurm option cpus_per_server must be a whole number of at least 1, "
                             f"got {self.cpus_per_server!r}")
        if self.time is not None and not _TIME_PATTERN.match(str(self.time)):
            raise ValueError(f"slurm option time must be minutes, HH:MM:SS or D-HH:MM:SS, got {self.time!r}")
        if self.mem_per_server is not None and not _MEM_PATTERN.match(str(self.mem_per_server)):
            raise ValueError(f"slurm option mem_per_server must be a size such as 512M or 2G, "
                             f"got {self.mem_per_server!r}")
        if self.partition is not None and not re.match(r"^[\w.,-]+$", self.partition):
            raise ValueError(f"slurm option partition must be a partition name, got {self.partition!r}")
        if any("\n" in line for line in self.sbatch_lines):
            raise ValueError("slurm option sbatch_lines: one option per line, without line breaks")
        if self.start_timeout <= 0:
            raise ValueError(f"slurm option start_timeout must be a positive number of seconds, "
                             f"got {self.start_timeout!r}")

    # -- the job ---------------------------------------------------------------------------------

    def job_script(self, pool_name: str, names: Sequence[str], spec: ServerSpec, token_path: str,
                   log_paths: Sequence[str], job_log: str) -> str:
        """The batch script: N steps of one task, each a server; it ends when they all have."""
        header = [f"--job-name=agentnb-{pool_name}", f"--ntasks={len(names)}",
                  f"--cpus-per-task={self.cpus_per_server}", f"--output={job_log}"]
        if self.partition:
            header.append(f"--partition={self.partition}")
        if self.time:
            header.append(f"--time={self.time}")
        lines = ["#!/bin/sh", *(f"#SBATCH {option}" for option in header)]
        lines += [line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in self.sbatch_lines]
        lines += [f"{ENV_TOKEN}=\"$(cat {shlex.quote(token_path)})\" || exit 1", f"export {ENV_TOKEN}"]
        step = ["srun", "--ntasks=1", "--nodes=1", "--exact", f"--cpus-per-task={self.cpus_per_server}"]
        if self.mem_per_server:
            step.append(f"--mem={self.mem_per_server}")
        # Each server binds its own node's name (known only there), after the options that
        # server_argv gave it: the last --host wins.
        bind = ["/bin/sh", "-c", 'exec "$@" --no-local-mode --host "$(hostname)"', "agentnb-server"]
        for name, log_path in zip(names, log_paths, strict=True):
            server = [sys.executable, "-P", "-m", "agentnb.server", *spec.args_for(name), "--log-path", log_path]
            lines.append(" ".join(shlex.quote(a) for a in [*step, f"--output={log_path}", *bind, *server]) + " &")
        lines.append("wait")
        return "\n".join(lines) + "\n"

    def start(self, pool_name: str, names: Sequence[str], spec: ServerSpec, first_index: int = 0) -> SlurmJob:
        """Submit the job and wait until every server listens (see the module's docstring).

        ``first_index`` is the pool index of the first server (more than 0 when a pool grows:
        its further servers are a further job, with its own script and log).

        Raises:
            AgentServerError: no Slurm here, sbatch refused the job, Slurm ended it, or the servers
                did not listen within ``start_timeout`` (the job is cancelled then).
        """
        folder = slurm_dir()
        launch = pool_name + (f"-{first_index}" if first_index else "")
        token_path = folder / f"{launch}.token"
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(spec.token)
        logs = runtime_dir() / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        log_paths = [str(logs / f"{name}.log") for name in names]
        job_log = str(folder / f"{launch}.job.log")
        script = folder / f"{launch}.sbatch"
        script.write_text(self.job_script(pool_name, names, spec, str(token_path), log_paths, job_log))
        env = {key: value for key, value in os.environ.items() if key != ENV_TOKEN}
        env.update(spec.extra_env)
        env.update({ENV_DIR: str(runtime_dir()), "PYTHONPATH": os.pathsep.join(import_path())})
        try:
            done = _run("sbatch", "--parsable", str(script), env=env)
            if done.returncode != 0:
                raise AgentServerError(f"sbatch refused the servers' job: {done.stderr.strip() or done.stdout.strip()}")
            job = SlurmJob(done.stdout.strip().split(";")[0], job_log=job_log)
            _live_jobs.add(job)
            try:
                job.records = self._await_servers(job, pool_name, names, first_index)
            except BaseException:
                job.shutdown(grace=0.0)
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                token_path.unlink()
        return job

    def _await_servers(self, job: SlurmJob, pool_name: str, names: Sequence[str],
                       first_index: int = 0) -> list[ServerRecord]:
        deadline = time.monotonic() + self.start_timeout
        next_look = 0.0
        found: dict[str, ServerRecord] = {}
        while len(found) < len(names):
            found.update({n: r for n in names if n not in found and (r := read_record(n)) is not None})
            if len(found) == len(names):
                break
            now = time.monotonic()
            if now >= next_look:
                next_look = now + STATE_INTERVAL
                ended = job.ended()
                if ended:
                    raise AgentServerError(f"{ended} before its servers listened{job.log_tail()}")
            if now >= deadline:
                state, reason = job.state()
                raise AgentServerError(f"the servers of slurm job {job.job_id} did not all listen within "
                                       f"{self.start_timeout:g} s (job {state}, reason {reason}; "
                                       f"{len(found)} of {len(names)} listen); it was cancelled{job.log_tail()}")
            time.sleep(POLL_INTERVAL)
        handle = {LAUNCHER_KEY: NAME, HANDLE_KEY: f"job {job.job_id}"}
        count = first_index + len(names)
        return [mark_replica(name, pool_name, first_index + i, count, **handle) or found[name]
                for i, name in enumerate(names)]


class SlurmJob:
    """The Slurm job of a pool's servers: what Slurm says of it, and how to end it."""

    def __init__(self, job_id: str, records: Sequence[ServerRecord] = (), job_log: str = "") -> None:
        self.job_id = job_id
        self.records = list(records)
        self.job_log = job_log
        self._stopped = False

    def __repr__(self) -> str:
        return f"SlurmJob({self.job_id}, {len(self.records)} servers)"

    def covers(self, host: str, port: int) -> bool:
        return any(record.is_at(host, port) for record in self.records)

    def state(self) -> tuple[str, str]:
        """The job's state and Slurm's reason for it (``GONE`` once Slurm has forgotten it)."""
        done = _run("scontrol", "show", "job", "-o", self.job_id)
        if done.returncode != 0:
            return "GONE", done.stderr.strip()
        state = re.search(r"\bJobState=(\S+)", done.stdout)
        reason = re.search(r"\bReason=(\S+)", done.stdout)
        return (state.group(1) if state else "UNKNOWN"), (reason.group(1) if reason else "")

    def ended(self) -> str:
        """Why the job ended, as a sentence (``slurm job 12 ended: TIMEOUT``); empty while it runs or waits."""
        state, reason = self.state()
        if state in RUNNING_STATES:
            return ""
        because = f" ({reason})" if reason and reason != "None" else ""
        return f"slurm job {self.job_id} ended: {state}{because}"

    def log_tail(self, lines: int = 20) -> str:
        if not self.job_log or not os.path.isfile(self.job_log):
            return ""
        text = pathlib.Path(self.job_log).read_text(errors="replace")  # a few lines: what srun said
        tail = "".join(text.splitlines(keepends=True)[-lines:]).rstrip()
        return f"\n--- end of {self.job_log} ---\n{tail}" if tail else ""

    def shutdown(self, grace: float = 5.0) -> None:
        """``scancel`` the job and wait until Slurm has ended it; remove its servers' records.

        The servers get SIGTERM and their own ``--grace`` for running calls; ``grace`` 0 cancels
        with SIGKILL at once.
        """
        if self._stopped:
            return
        self._stopped = True
        _live_jobs.discard(self)
        signal = [] if grace > 0 else ["--signal=KILL"]
        _run("scancel", *signal, self.job_id)
        deadline = time.monotonic() + grace + KILL_WAIT
        while time.monotonic() < deadline and not self.ended():
            time.sleep(STATE_INTERVAL / 4)
        for record in self.records:
            remove_record(record.name)


_live_jobs: OwnLaunches = OwnLaunches()  # stopped at exit unless they are daemons


def stop_recorded(records: Sequence[ServerRecord], grace: float) -> None:
    """Stop the Slurm jobs of ``records`` (servers of one or several jobs, as they recorded it)."""
    jobs: dict[str, list[ServerRecord]] = {}
    for record in records:
        handle = str(record.extra.get(HANDLE_KEY, ""))
        jobs.setdefault(handle.removeprefix("job "), []).append(record)
    for job_id, members in jobs.items():
        SlurmJob(job_id, members).shutdown(grace)


def job_state(record: ServerRecord) -> str:
    """What Slurm says of the job of the server of ``record``: empty while it runs."""
    handle = str(record.extra.get(HANDLE_KEY, ""))
    return SlurmJob(handle.removeprefix("job ")).ended()
