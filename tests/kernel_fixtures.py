"""Fixtures for the notebook-side tests: real IPython kernels, a daemon registry and a daemon reaper.

tests/conftest.py registers this module for the whole suite (``pytest_plugins``):
a test asks for ``kernel``, ``start_kernel`` or ``registry`` by name.

``reap_daemons`` is autouse, for every test in every folder: when a test ends,
whatever happened, it stops every agent server recorded in the test's runtime
directory, so no daemon outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from jupyter_client.manager import KernelManager

from agentnb import DaemonRegistry, clear_default_server, stop_server
from agentnb.runtime_dir import pid_alive

KERNEL_NAME = "python3"
CELL_TIMEOUT = 120.0


@dataclass
class CellResult:
    """What a cell produced: its status, streams, rich outputs and error."""

    status: str
    stdout: str = ""
    stderr: str = ""
    outputs: list[dict] = field(default_factory=list)  # the data of execute_result / display_data
    ename: str = ""
    evalue: str = ""
    traceback: str = ""

    @property
    def text(self) -> str:
        """stdout plus the text/plain of every rich output."""
        return self.stdout + "".join(o.get("text/plain", "") for o in self.outputs)


class Kernel:
    """A real IPython kernel (jupyter_client) running cells for a test."""

    def __init__(self, env: dict[str, str], cwd: str, manager: KernelManager | None = None) -> None:
        """Start a kernel: the ``python3`` one, or the one ``manager`` (not started yet) describes."""
        self.manager = manager or KernelManager(kernel_name=KERNEL_NAME)
        self.manager.start_kernel(env=env, cwd=cwd)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid  # type: ignore[union-attr]

    def submit(self, code: str) -> str:
        """Start running ``code``; return its message id (see :meth:`collect`)."""
        return self.client.execute(code)

    def collect(self, msg_id: str, timeout: float = CELL_TIMEOUT) -> CellResult:
        """Wait for the cell ``msg_id`` to finish and gather what it produced."""
        deadline = time.monotonic() + timeout
        result = CellResult(status="")
        idle = False
        while not idle:
            msg = self._next(self.client.get_iopub_msg, deadline, msg_id)
            kind, content = msg["msg_type"], msg["content"]
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if kind == "stream":
                setattr(result, content["name"], getattr(result, content["name"]) + content["text"])
            elif kind in ("execute_result", "display_data"):
                result.outputs.append(content["data"])
            elif kind == "error":
                result.ename, result.evalue = content["ename"], content["evalue"]
                result.traceback = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        while True:
            reply = self._next(self.client.get_shell_msg, deadline, msg_id)
            if reply["parent_header"].get("msg_id") == msg_id:
                content = reply["content"]
                result.status = content["status"]
                if result.status == "error" and not result.ename:  # e.g. UsageError: reply only
                    result.ename, result.evalue = content.get("ename", ""), content.get("evalue", "")
                return result

    @staticmethod
    def _next(get: Callable[..., dict], deadline: float, msg_id: str) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"cell {msg_id} did not finish in time")
        try:
            return get(timeout=remaining)
        except queue.Empty:
            raise AssertionError(f"cell {msg_id} did not finish in time") from None

    def run(self, code: str, timeout: float = CELL_TIMEOUT, expect_error: bool = False) -> CellResult:
        """Run a cell; fail the test with the kernel's traceback if it raised (unless expected)."""
        result = self.collect(self.submit(code), timeout)
        if expect_error:
            assert result.status == "error", f"expected an error from:\n{code}\ngot: {result}"
        else:
            assert result.status == "ok", f"cell failed:\n{code}\n{result.ename}: {result.evalue}\n{result.traceback}"
        return result

    def restart(self) -> None:
        """Restart the kernel process (a new process, as Kernel > Restart does)."""
        self.manager.restart_kernel(now=False)
        self.client.wait_for_ready(timeout=60)

    def shutdown(self, now: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=now)


@pytest.fixture
def start_kernel(runtime_dir: str, tmp_path: pathlib.Path) -> Iterator[Callable[[], Kernel]]:
    """A factory of real kernels sharing the test's runtime directory; all are shut down at the end."""
    kernels: list[Kernel] = []
    env = dict(os.environ, AGENTNB_RUNTIME_DIR=runtime_dir)
    env.pop("AGENTNB_TOKEN", None)

    def start() -> Kernel:
        kernel = Kernel(env, str(tmp_path))
        kernels.append(kernel)
        return kernel

    yield start
    for kernel in kernels:
        kernel.shutdown(now=True)


@pytest.fixture
def kernel(start_kernel: Callable[[], Kernel]) -> Kernel:
    """One real kernel."""
    return start_kernel()


def recorded_pids(runtime_dir: str) -> dict[str, int]:
    """Every server recorded in ``runtime_dir`` (live or not): name -> pid."""
    pids = {}
    for path in pathlib.Path(runtime_dir, "servers").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids[path.stem] = int(json.loads(path.read_text())["pid"])
    return pids


def kill_recorded_servers(runtime_dir: str, grace: float = 5.0) -> list[str]:
    """SIGTERM every recorded agent server, SIGKILL the ones still there after ``grace``; their names."""
    pids = {name: pid for name, pid in recorded_pids(runtime_dir).items() if _is_agent_server(pid)}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids.values():
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return sorted(pids)


def _is_agent_server(pid: int) -> bool:
    if pid == os.getpid():  # a server a test launched in this process (in_subprocess=False)
        return False
    try:
        return b"agentnb.server" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture(autouse=True)
def reap_daemons(runtime_dir: str) -> Iterator[None]:
    """No daemon started during a test outlives it (even when the test fails)."""
    yield
    kill_recorded_servers(runtime_dir)


@pytest.fixture
def daemons() -> Iterator[None]:
    """Daemons a test starts through agentnb's public API (``agentnb.start_server``...), and the
    default server it set, end with it."""
    try:
        yield
    finally:
        clear_default_server()
        stop_server(all=True, grace=2)


@pytest.fixture
def registry() -> Iterator[DaemonRegistry]:
    """A daemon registry whose daemons, and this process's default placement, end with the test."""
    registry = DaemonRegistry()
    try:
        yield registry
    finally:
        clear_default_server()
        registry.stop_all(grace=2)
