"""Real cluster engines for the tests, started once per test session and stopped at its end.

``slurm_cluster``: Debian's Slurm (``slurm-wlm``, with ``munge``) on this host: ``munged``
(unless one already runs), ``slurmctld`` and ``slurmd``, configured in a temporary folder
(``SLURM_CONF`` points there, on free ports), one node of this host's name in partition
``debug``. The tests' processes, and the jobs they submit, see that configuration through
their environment. Every daemon started here is stopped by its pid, also when a test fails.

Where the engine cannot be started (not installed, not root), the tests that need it are
skipped with the reason, which under ``CI=true`` is a failure (``skip_report``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from helpers_runtime import free_port, wait_for

SLURM_COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
MUNGE_SOCKET = pathlib.Path("/run/munge/munge.socket.2")
# Declared to Slurm whatever the machine has (slurmd accepts it with config_overrides): agent
# servers are mostly idle, and a pool of 8 fits on a 2-core test machine.
SLURM_CPUS = 8


def slurm_missing() -> str:
    """Why a Slurm cluster cannot be started here, or '' when it can."""
    lacking = [c for c in (*SLURM_COMMANDS, "munged") if shutil.which(c) is None]
    if lacking:
        return (f"no Slurm here ({', '.join(lacking)} not found; Debian: apt-get install slurm-wlm munge, which "
                "tests/system_requirements.py --install does as root)")
    if os.geteuid() != 0:
        return "starting slurmctld and slurmd for the tests needs root"
    return ""


@dataclass
class SlurmCluster:
    """slurmctld and slurmd of this host, and munged if none ran, configured in ``folder``."""

    folder: pathlib.Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> pathlib.Path:
        return self.folder / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        for sub in ("ctld", "d"):
            (self.folder / sub).mkdir(exist_ok=True)
        self.conf.write_text("\n".join([
            "ClusterName=agentnbtest", f"SlurmctldHost={self.node}", "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "AuthType=auth/munge",
            f"StateSaveLocation={self.folder / 'ctld'}", f"SlurmdSpoolDir={self.folder / 'd'}",
            f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}", f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.folder / 'slurmctld.log'}", f"SlurmdLogFile={self.folder / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
            "SlurmdParameters=config_overrides", "KillWait=5", "MinJobAge=300", "InactiveLimit=0",
            f"NodeName={self.node} CPUs={max(SLURM_CPUS, os.cpu_count() or 1)} RealMemory={memory} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")

    def _start(self, *argv: str) -> subprocess.Popen:
        log = open(self.folder / f"{pathlib.Path(argv[0]).name}.out", "wb")  # noqa: SIM115 (the daemon keeps it)
        process = subprocess.Popen(list(argv), env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> SlurmCluster:
        self.write_conf()
        if not MUNGE_SOCKET.exists():
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
            # -F: in the foreground, so that it is our child and is stopped by its pid.
            self._start("setpriv", "--reuid=munge", "--regid=munge", "--init-groups", "munged", "-F")
            wait_for(MUNGE_SOCKET.exists, timeout=20.0, what="munged's socket")
        self._start("slurmctld", "-D", "-i")
        self._start("slurmd", "-D", "-N", self.node)
        wait_for(self.node_idle, timeout=60.0, what=f"the Slurm node {self.node} idle\n{self.logs()}")
        return self

    def node_idle(self) -> bool:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[0]} exited ({process.returncode})\n{self.logs()}"
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env(), capture_output=True, text=True,
                              timeout=30)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def jobs(self) -> list[str]:
        """The jobs Slurm has queued or running: ``ID STATE`` each."""
        done = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self.env(), capture_output=True, text=True,
                              timeout=30, check=True)
        return done.stdout.split("\n")[:-1] if done.stdout else []

    def scontrol(self, *args: str) -> str:
        done = subprocess.run(["scontrol", *args], env=self.env(), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def scancel(self, *args: str) -> None:
        done = subprocess.run(["scancel", *args], env=self.env(), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "--signal=KILL", "--user", "root"], env=self.env(), capture_output=True, timeout=30)

    def logs(self) -> str:
        texts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "setpriv.out"):
            path = self.folder / name
            if path.exists():
                texts.append(f"--- {name} ---\n" + "".join(path.read_text(errors="replace").splitlines(True)[-15:]))
        return "\n".join(texts)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cancel_all()
        for process in reversed(self.processes):  # slurmd, slurmctld, then munged
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real one-node Slurm cluster for the session (see the module's docstring)."""
    missing = slurm_missing()
    if missing:
        pytest.skip(missing)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # sbatch, squeue, ... of the launcher find it
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
