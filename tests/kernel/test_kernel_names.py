"""In a real kernel, a daemon is shown by its name (widget header, %agent_server list), and after a
restart ``agentnb.get_agent`` finds an agent on your running daemons without ``%agent_server use``."""

from __future__ import annotations

import textwrap

from kernel_fixtures import Kernel

from agentnb.runtime_dir import read_record

LOAD = "%load_ext agentnb\nimport agentnb"

TALLY = textwrap.dedent("""
    class Tally(agentnb.AgentBase):
        def __init__(self, name):
            super().__init__(name)
            self.total = 0

        def add(self, x):
            self.total += x
            return self.total

        @agentnb.async_func
        def double(self, x):
            return 2 * x
""")


def test_a_daemon_is_shown_by_its_name_and_found_again_after_a_restart(kernel: Kernel) -> None:
    kernel.run(LOAD)
    kernel.run("%agent_server start --name lab")
    record = read_record("lab")
    assert record is not None
    kernel.run(TALLY)
    kernel.run("w0 = Tally('W0', to_dist=True)\nres = w0.double(21)\nassert res.result(timeout=60) == 42")

    header = kernel.run("from kernel_ext.widgets import ResultView\nprint(ResultView(res).header.value)").stdout
    assert ">lab</span>" in header and f'title="{record.address}"' in header, header
    assert "server='lab'" in kernel.run("print(res.call_info)").stdout

    listing = kernel.run("%agent_server list").outputs[0]["text/plain"]
    row = next(line for line in listing.splitlines() if line.startswith("lab "))
    assert record.address in row

    kernel.restart()
    kernel.run(LOAD)
    found = kernel.run("w0 = agentnb.get_agent('W0')\nprint(w0.add(5), repr(w0))").stdout  # no %agent_server use
    assert found.startswith("5 ") and "agent server 'lab' at" in found, found

    kernel.run("%agent_server start --name lab2 --no-default")
    kernel.run(TALLY)
    kernel.run("other = Tally('W0', to_dist=agentnb.find_server('lab2'))\nassert other.add(1) == 1")
    both = kernel.run("agentnb.get_agent('W0')", expect_error=True)
    assert both.ename == "AgentNotFound" and "'W0' lives on 'lab' and 'lab2'" in both.evalue, both.evalue
    missing = kernel.run("agentnb.get_agent('nobody')", expect_error=True)
    assert "'lab' and 'lab2'" in missing.evalue and "%agent_server start" not in missing.evalue, missing.evalue
