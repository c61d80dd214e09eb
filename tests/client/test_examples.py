"""The seed's examples, as runnable files, run the way a user runs them."""

from __future__ import annotations

import os
import re
import signal

import pytest
from helpers_runtime import REPO, Script, free_port, run_script

EXAMPLES = os.path.join(REPO, "agentnb", "examples")
SLEEP = "1"  # seconds per agent: five agents take about 1 s distributed, 5 s sequential
ANSWERS = [f"[W{i}] Answer from page_{i + 1}" for i in range(5)]


def _timings(stdout: str) -> dict[str, float]:
    """The timing table at the end of dist_main's output."""
    table = {}
    for name in ("initialisation", "sequential", "distributed"):
        match = re.search(rf"^{name}\s+([0-9.]+)$", stdout, re.MULTILINE)
        assert match, f"no {name} row in:\n{stdout}"
        table[name] = float(match.group(1))
    return table


def _check_dist_main_output(stdout: str, sleep: float) -> None:
    lines = stdout.splitlines()
    # The answers, once for the sequential run and once for the distributed one, in order.
    assert [line for line in lines if "Answer from" in line] == ANSWERS * 2
    assert any(line.startswith("Time taken for initialization:") for line in lines)
    timings = _timings(stdout)
    assert timings["sequential"] >= 5 * sleep * 0.9  # five agents, one after the other
    assert timings["distributed"] < 0.6 * timings["sequential"], timings


@pytest.mark.parametrize("init_style, cwd, sleep", [("method", REPO, SLEEP), ("arg", EXAMPLES, "0.5")],
                         ids=["to_dist-method-from-repo-root", "to_dist-arg-from-examples-folder"])
def test_dist_main_child_mode(init_style, cwd, sleep) -> None:
    path = "agentnb/examples/dist_main.py" if cwd == REPO else "dist_main.py"
    done = run_script(path, "--sleep", sleep, "--init-style", init_style, cwd=cwd)
    assert done.returncode == 0, done.stderr
    _check_dist_main_output(done.stdout, float(sleep))


def test_dist_main_with_dist_server_independent_mode() -> None:
    port = str(free_port())
    server = Script(os.path.join(EXAMPLES, "dist_server.py"), "--port", port)
    try:
        assert server.readline() == f"agent server listening on localhost:{port}"
        for style, sleep in (("arg", SLEEP), ("method", "0.5")):
            done = run_script(os.path.join(EXAMPLES, "dist_main.py"), "--sleep", sleep,
                              "--host", "localhost", "--port", port, "--init-style", style)
            assert done.returncode == 0, done.stderr
            _check_dist_main_output(done.stdout, float(sleep))
        assert server.process.poll() is None  # still serving after its clients left
        server.process.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        rc, _, stderr = server.wait(30)
        assert rc == 0, stderr
    finally:
        server.kill()


def test_dist_main_refuses_host_without_port() -> None:
    done = run_script(os.path.join(EXAMPLES, "dist_main.py"), "--host", "localhost")
    assert done.returncode == 2 and "--host and --port go together" in done.stderr


def test_example_class() -> None:
    done = run_script(os.path.join(EXAMPLES, "example_class.py"), "--sleep", "0.5")
    assert done.returncode == 0, done.stderr
    sync_cost = float(re.search(r"Sync func cost: ([0-9.e-]+) s", done.stdout).group(1))
    async_cost = float(re.search(r"Async func cost: ([0-9.e-]+) s", done.stdout).group(1))
    assert sync_cost >= 0.45  # the caller waited for sync_method
    assert async_cost < 0.6 * sync_cost  # but not for the async methods
    assert done.stdout.strip().endswith("all assertions passed")
