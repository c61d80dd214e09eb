"""Child mode inside a kernel: no magic, a child server on first to_dist(), gone with the kernel."""

from __future__ import annotations

import os
import pathlib
import signal
import textwrap

import pytest
from helpers_runtime import wait_for
from kernel_fixtures import Kernel

from agentnb.runtime_dir import pid_alive

AGENTS = textwrap.dedent("""
    import os
    import agentnb

    class Where(agentnb.AgentBase):
        def pid(self):
            return os.getpid()

    first, second = Where('first', to_dist=True), Where('second').to_dist()
    print(first.pid(), second.pid())
""")


def parent_pid(pid: int) -> int:
    return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("end", ["shutdown", "kill"])
def test_child_server_ends_with_the_kernel(kernel: Kernel, end: str) -> None:
    first, second = map(int, kernel.run(AGENTS).stdout.split())
    assert first == second, "later agents reuse the kernel's child server"
    assert parent_pid(first) == kernel.pid
    if end == "shutdown":
        kernel.shutdown(now=False)
    else:
        os.kill(kernel.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(first), 15, what=f"the child server to exit after a kernel {end}")
