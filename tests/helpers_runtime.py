"""Helpers of the runtime tests: polling with a deadline, scripts, free ports."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

from agentnb.runtime_dir import pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")

# How long the long call sleeps (see conftest.py): an async call of that many seconds simply returns.
LONG_CALL_SECONDS = 150


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail naming ``what``
    after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def completed_when_idle(connection: Any) -> int:
    """The server's count of finished calls, read once nothing runs there: a call's reply goes
    out just before the server counts it, so a count read right after a reply may still grow."""
    return wait_for(lambda: (info := connection.info()).busy == 0 and info, what="the server to be idle").completed


def wait_pid_gone(pid: int, timeout: float = 15.0) -> None:
    wait_for(lambda: not pid_alive(pid), timeout, what=f"process {pid} to exit")


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from one position to the next (a misplaced chunk shows)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


def child_server_pids(pid: int) -> list[int]:
    """The child-mode agent servers of process ``pid`` (``python -m agentnb.server ... --child``),
    from the process listing; its other children (daemons, launchers, scripts) are not these."""
    children = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return sorted(child for child in children if b"--child" in command_line(child))


def command_line(pid: int) -> list[bytes]:
    """The arguments of process ``pid`` (empty once it has exited). A process whose exec has just
    begun shows an empty command line for a moment: that is waited out."""
    proc = pathlib.Path(f"/proc/{pid}")
    deadline = time.monotonic() + 5.0
    while True:
        try:
            cmdline = (proc / "cmdline").read_bytes()
            exited = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:  # gone
            return []
        if cmdline or exited or time.monotonic() > deadline:
            return cmdline.split(b"\0")[:-1]
        time.sleep(0.005)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_env(**extra: str) -> dict[str, str]:
    """The environment of a test script: this process's, plus the tests folder on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_script(path: str, *args: str, timeout: float = 90.0, cwd: str | None = None,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Python script to its end (killed after ``timeout`` s) and capture its output."""
    return subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env or script_env(), stdin=subprocess.DEVNULL)


DIST_MAIN_ANSWERS = [f"[W{i}] Answer from page_{i + 1}" for i in range(5)]


def dist_main_timings(stdout: str) -> dict[str, float]:
    """The timing table at the end of the output of the seed's example (``dist_main``)."""
    table = {}
    for name in ("initialisation", "sequential", "distributed"):
        match = re.search(rf"^{name}\s+([0-9.]+)$", stdout, re.MULTILINE)
        assert match, f"no {name} row in:\n{stdout}"
        table[name] = float(match.group(1))
    return table


def check_dist_main_output(stdout: str, sleep: float) -> None:
    """``dist_main --sleep sleep`` answered every query twice, in order, and distributed beat sequential."""
    lines = stdout.splitlines()
    # The answers, once for the sequential run and once for the distributed one, in order.
    assert [line for line in lines if "Answer from" in line] == DIST_MAIN_ANSWERS * 2
    assert any(line.startswith("Time taken for initialization:") for line in lines)
    timings = dist_main_timings(stdout)
    assert timings["sequential"] >= 5 * sleep * 0.9  # five agents, one after the other
    assert timings["distributed"] < 0.6 * timings["sequential"], timings


def write_script(tmp_path: Any, code: str, name: str = "script.py") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(code))
    return path


class Script:
    """A Python script in its own process, killed when the test ends (see :meth:`kill`).

    Its output is read by a thread, so that :meth:`readline` can wait with a deadline.
    """

    def __init__(self, path: str, *args: str, cwd: str | None = None, env: dict | None = None,
                 python: str | None = sys.executable) -> None:
        """Run ``path`` with ``python`` (``None``: run ``path`` itself, e.g. a console script)."""
        self.process = subprocess.Popen(
            [*([python] if python else []), path, *args], cwd=cwd or REPO, env=env or script_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._stderr: list[str] = []
        self.exited_at: float | None = None  # time.time() when the process was seen to end
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self._lines.put(line.rstrip("\n"))
        self.process.wait()
        self.exited_at = time.time()
        self._lines.put(None)

    def readline(self, timeout: float = 30.0) -> str:
        """The next line of the script's output (fails after ``timeout`` s or at its end)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the script within {timeout} s") from None
        if line is None:
            self._lines.put(None)
            raise AssertionError(f"the script ended (rc={self.process.returncode}): {''.join(self._stderr)}")
        return line

    def wait(self, timeout: float = 60.0) -> tuple[int, list[str], str]:
        """Wait for the script to end; return its exit status, remaining output lines and stderr."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the script did not end within {timeout} s") from None
            if line is None:
                break
            lines.append(line)
        self._lines.put(None)
        return self.process.returncode, lines, "".join(self._stderr)

    def kill(self) -> None:
        """Kill the script (and whatever shares its session) if it is still running."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)
