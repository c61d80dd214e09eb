"""Real cluster engines for the tests, started once per test session and stopped at its end.

``slurm_cluster``: Debian's Slurm (``slurm-wlm``, with ``munge``) on this host: ``munged``
(unless one already runs), ``slurmctld`` and ``slurmd``, configured in a temporary folder
(``SLURM_CONF`` points there, on free ports), one node of this host's name in partition
``debug``. The tests' processes, and the jobs they submit, see that configuration through
their environment. Every daemon started here is stopped by its pid, also when a test fails.

``ray_cluster``: a Ray head on this host, on its end of a veth pair, and a worker node in a
network namespace at the other end: two real nodes (``RayCluster``), with token authentication
(a token of the session's own) and stopped by pid, never ``ray stop``.

Where the engine cannot be started (not installed, not root), the tests that need it are
skipped with the reason, which under ``CI=true`` is a failure (``skip_report``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
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


# -- Ray -------------------------------------------------------------------------------------------

# The raylet gives its dashboard agent this long to start (Ray's default is shorter): on a loaded
# 2-core machine the agent's imports alone can take longer, and the node then fails to start.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "120000"}


def ray_missing() -> str:
    """Why a two-node Ray cluster cannot be started here, or '' when it can."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'agentnb[ray]'; the test extra brings it)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is needed for the Ray worker node's network namespace; Debian: apt-get install iproute2"
    if os.geteuid() != 0:
        return "the Ray worker node's network namespace needs root"
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _session_of(pid: int) -> int | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


@dataclass
class RayCluster:
    """A Ray head on this host (on its end of a veth pair) and a worker node in a network namespace.

    Each ``ray start --block`` runs in its own session: the head's processes are those of that
    session, the worker node's those of its namespace; both are stopped by their pids, never by
    ``ray stop`` (which would end every Ray of the machine).
    """

    folder: pathlib.Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    processes: list[subprocess.Popen] = field(default_factory=list)
    port: int = 0
    client_port: int = 0  # the head's Ray client server (ray://)

    def __post_init__(self) -> None:
        subnet = f"10.232.{int(self.tag, 16) % 250 + 1}"
        self.head_ip, self.worker_ip = f"{subnet}.1", f"{subnet}.2"
        self.namespace = f"anb-{self.tag}-ray"
        self.veth_host, self.veth_worker = f"anbh{self.tag}", f"anbw{self.tag}"

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    @property
    def temp_dir(self) -> pathlib.Path:
        """The head's Ray folder (sessions, logs); the worker node's is Ray's default, /tmp/ray."""
        return pathlib.Path(f"/tmp/anbray-{self.tag}h")

    def ray_env(self) -> dict[str, str]:
        """What every process of the cluster, and every driver, needs: token authentication, with
        the cluster's own token (in a 0600 file of the session, not ``~/.ray/auth_token``)."""
        return {**RAY_ENV, "RAY_AUTH_TOKEN_PATH": str(self.folder / "auth_token")}

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.ray_env()}

    def _ray_start(self, name: str, *args: str, wrapper: tuple[str, ...] = ()) -> subprocess.Popen:
        ray = str(pathlib.Path(sys.executable).with_name("ray"))
        log = open(self.folder / f"{name}.out", "wb")  # noqa: SIM115 (the process keeps it)
        process = subprocess.Popen([*wrapper, ray, "start", "--block", "--disable-usage-stats", *args], env=self.env(),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> RayCluster:
        fd = os.open(self.folder / "auth_token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_worker)
        _ip("link", "set", self.veth_worker, "netns", self.namespace)
        _ip("addr", "add", f"{self.head_ip}/24", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.namespace, "addr", "add", f"{self.worker_ip}/24", "dev", self.veth_worker)
        _ip("-n", self.namespace, "link", "set", self.veth_worker, "up")
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        for attempt in (1, 2):  # `ray start` gives a node 30 s to register: a loaded machine may need another go
            self.port, self.client_port = free_port(), free_port()
            head = self._ray_start("head", "--head", f"--node-ip-address={self.head_ip}", f"--port={self.port}",
                                   f"--dashboard-port={free_port()}", f"--ray-client-server-port={self.client_port}",
                                   "--dashboard-host=127.0.0.1", "--num-cpus=2", f"--temp-dir={self.temp_dir}")
            if self._node_started(head, 1, "the Ray head", last=attempt == 2):
                break
            self._forget_node(head, self.head_pids())
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        for attempt in (1, 2):
            worker = self._ray_start("worker", f"--address={self.address}", f"--node-ip-address={self.worker_ip}",
                                     "--num-cpus=2", wrapper=("ip", "netns", "exec", self.namespace))
            if self._node_started(worker, 2, "the Ray worker node", last=attempt == 2):
                break
            self._forget_node(worker, self.worker_pids())
        return self

    def _node_started(self, process: subprocess.Popen, nodes: int, what: str, last: bool) -> bool:
        """Wait until ``nodes`` nodes are alive; False when ``process`` (a `ray start`) gave up on
        Ray's own startup bound and may be tried again (unless ``last``)."""
        try:
            wait_for(lambda: self.nodes_alive() >= nodes, timeout=120, what=f"{what}\n{self.logs()}")
        except AssertionError:
            if last or process.poll() is None or "timed out during startup" not in self.logs():
                raise
            return False
        return True

    def _forget_node(self, process: subprocess.Popen, pids: list[int]) -> None:
        """Kill what a failed `ray start` left (``pids``) and stop counting it."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.processes.remove(process)

    def nodes_alive(self) -> int:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[-1]} exited ({process.returncode})\n{self.logs()}"
        done = subprocess.run([str(pathlib.Path(sys.executable).with_name("ray")), "status",
                               f"--address={self.address}"], env=self.env(), capture_output=True, text=True,
                              timeout=60)
        return done.stdout.count(" node_") if done.returncode == 0 else 0

    def worker_pids(self) -> list[int]:
        """Every process of the worker node (its namespace)."""
        try:
            namespace = os.stat(f"/run/netns/{self.namespace}").st_ino
        except FileNotFoundError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError):
                if entry.isdigit() and os.stat(f"/proc/{entry}/ns/net").st_ino == namespace:
                    pids.append(int(entry))
        return pids

    def head_pids(self) -> list[int]:
        head = self.processes[0].pid
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _session_of(int(p)) == head]

    def kill_worker_node(self) -> None:
        """Kill every process of the worker node at once, as when the machine fails."""
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart_worker_node(self) -> None:
        """A new worker node in the namespace, after :meth:`kill_worker_node` (for the tests that come
        after the one that killed it); this process must be connected to the cluster (``ray.init``)."""
        import ray

        self.kill_worker_node()
        for process in self.processes[1:]:
            process.wait(30)
        del self.processes[1:]
        self._ray_start("worker", f"--address={self.address}", f"--node-ip-address={self.worker_ip}",
                        "--num-cpus=2", wrapper=("ip", "netns", "exec", self.namespace))
        wait_for(lambda: any(n["Alive"] and n["NodeManagerAddress"] == self.worker_ip for n in ray.nodes()),
                 timeout=120, what=f"the new Ray worker node\n{self.logs()}")

    def logs(self) -> str:
        texts = []
        for name in ("head.out", "worker.out"):
            path = self.folder / name
            if path.exists():
                texts.append(f"--- {name} ---\n" + "".join(path.read_text(errors="replace").splitlines(True)[-15:]))
        return "\n".join(texts)

    def stop(self) -> None:
        self.kill_worker_node()
        pids = self.head_pids() if self.processes else []
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for pid in pids:  # what `ray start` left of the head (raylet, GCS, workers, dashboard)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("netns", "del", self.namespace, check=False)  # and with it the veth pair
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A real two-node Ray cluster for the session (see :class:`RayCluster`)."""
    missing = ray_missing()
    if missing:
        pytest.skip(missing)
    cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    previous = {key: os.environ.get(key) for key in cluster.ray_env()}
    os.environ.update(cluster.ray_env())  # this process connects to it as a driver
    try:
        yield cluster.start()
    finally:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
