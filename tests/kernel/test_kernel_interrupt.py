"""Interrupting a cell that waits on agentnb calls, in a real kernel: the calls it queued that
have not started are cancelled, the running ones finish on their server, and the cell says so
in one line instead of a traceback of agentnb's waiting frames."""

from __future__ import annotations

import pathlib
import re
import textwrap

import pytest
from helpers_runtime import wait_for
from kernel_fixtures import Kernel

SETUP = textwrap.dedent("""
    %load_ext agentnb
    import os, time
    import agentnb

    class Gated(agentnb.AgentBase):
        @agentnb.async_func
        def hold(self, started, gate, value):
            open(started, "w").close()  # the test sees the call run
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:  # the test opens the gate
                time.sleep(0.01)
            return value
""")

# Two agents, three calls each: one call of each runs (an agent runs its calls one at a time), four wait.
QUEUE = textwrap.dedent("""
    a, b = Gated("a", to_dist=True), Gated("b", to_dist=True)
    results = [agent.hold(f"{{STARTED}}-{{n}}", "{gate}", n) for n, agent in enumerate([a, b] * 3)]
""")


@pytest.fixture
def lab(kernel: Kernel) -> Kernel:
    """A kernel with the extension loaded, placing its agents on the daemon 'lab'."""
    kernel.run(SETUP)
    assert "running" in kernel.run("%agent_server start --name lab --capacity 8").stdout
    return kernel


@pytest.mark.parametrize("wait, error", [("[res.result() for res in results]", "KeyboardInterrupt"),
                                         ("[await res for res in results]", "CancelledError")],
                         ids=["result", "await"])
def test_interrupt_cancels_the_queued_calls_and_tells_what_still_runs(lab: Kernel, tmp_path: pathlib.Path,
                                                                      wait: str, error: str) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    lab.run(f"STARTED = {str(started)!r}")
    cell = lab.submit(QUEUE.format(gate=gate) + wait)
    wait_for(lambda: all(pathlib.Path(f"{started}-{i}").exists() for i in (0, 1)), 60, "a's and b's first calls to run")

    lab.manager.interrupt_kernel()
    interrupted = lab.collect(cell, timeout=60)

    assert interrupted.status == "error" and interrupted.ename == error
    assert interrupted.traceback == ("Interrupted: 4 calls of this cell cancelled before they started; 2 still "
                                     "running on 'lab' (a.hold, b.hold) and will finish there -- "
                                     "`%agent_server stop lab` stops them."), interrupted.traceback
    statuses = lab.run("print(*[res.status for res in results])").stdout.split()
    assert statuses == ["running", "running"] + ["cancelled"] * 4
    assert not any(pathlib.Path(f"{started}-{n}").exists() for n in range(2, 6)), "a cancelled call ran"

    gate.touch()
    finished = lab.run("print(agentnb.wait(results[:2], timeout=60), *[res.status for res in results])").stdout
    assert finished.split() == ["[0,", "1]", "done", "done"] + ["cancelled"] * 4
    assert lab.run("print(a.hold(STARTED + '-again', " + repr(str(gate)) + ", 'next').result())").stdout.strip() \
        == "next", "the agents take calls after the interrupt"


def test_other_interrupts_keep_ipythons_traceback(lab: Kernel, tmp_path: pathlib.Path) -> None:
    # The calls of this cell have all finished: the interrupt is only the sleep's.
    started = tmp_path / "sleeping"
    cell = lab.submit(textwrap.dedent(f"""
        a = Gated("a", to_dist=True)
        print(a.hold("{tmp_path / 'started'}", "{tmp_path}", 1).result())
        open({str(started)!r}, "w").close()
        time.sleep(60)
    """))
    wait_for(started.exists, 60, "the cell to sleep")
    lab.manager.interrupt_kernel()
    interrupted = lab.collect(cell, timeout=60)
    assert interrupted.ename == "KeyboardInterrupt"
    shown = re.sub(r"\x1b\[[0-9;]*m", "", interrupted.traceback)  # without its colours
    assert "----> 4 time.sleep(60)" in shown and "Interrupted:" not in shown, shown
    assert interrupted.stdout.strip() == "1"


def test_interrupt_with_only_running_calls_on_a_child_server(kernel: Kernel, tmp_path: pathlib.Path) -> None:
    kernel.run(SETUP)  # no daemon: the agent goes to a child server of the kernel
    started, gate = tmp_path / "started", tmp_path / "gate"
    cell = kernel.submit(f"g = Gated('g', to_dist=True)\nawait g.hold({str(started)!r}, {str(gate)!r}, 'late')")
    wait_for(started.exists, 60, "the call to run")
    kernel.manager.interrupt_kernel()
    interrupted = kernel.collect(cell, timeout=60)

    assert interrupted.ename == "CancelledError"
    assert re.fullmatch(r"Interrupted: 1 call of this cell still running on the child server of this kernel "
                        r"\(g\.hold\) and will finish there -- stopping that server "
                        r"\(a child server: restarting the kernel\) stops it\.",
                        interrupted.traceback), interrupted.traceback
    gate.touch()
    assert kernel.run(f"print(g.hold({str(started)!r}, {str(gate)!r}, 'next').result(timeout=60))").stdout.strip() \
        == "next", "the running call ended and the agent takes calls again"


def test_a_custom_exception_handler_of_the_user_is_kept(kernel: Kernel) -> None:
    kernel.run(textwrap.dedent("""
        def mine(shell, etype, value, tb, tb_offset=None):
            print("my handler saw", etype.__name__)

        get_ipython().set_custom_exc((ValueError,), mine)
    """))
    kernel.run("%load_ext agentnb\n%reload_ext agentnb")
    assert kernel.run("raise ValueError('x')", expect_error=True).stdout.strip() == "my handler saw ValueError"
    kernel.run("%unload_ext agentnb")
    assert kernel.run("raise ValueError('y')", expect_error=True).stdout.strip() == "my handler saw ValueError"
    assert kernel.run("print(get_ipython().custom_exceptions)").stdout.strip() == "(<class 'ValueError'>,)"
