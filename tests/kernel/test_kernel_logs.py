"""``%agent_server start --log-level`` and ``%agent_server logs`` in a real kernel."""

from __future__ import annotations

import textwrap

from kernel_fixtures import Kernel

from agentnb.runtime_dir import read_record

CALLS = textwrap.dedent("""
    import agentnb

    class Sums(agentnb.AgentBase):
        def add(self, a, b):
            return a + b

        def divide(self, a, b):
            return a / b

    sums = Sums("S0", to_dist=True)
    print(sums.add(1, 2))
    try:
        sums.divide(1, 0)
    except ZeroDivisionError as exc:
        print("failed:", exc)
""")


def test_debug_log_level_shows_every_call_in_the_logs(kernel: Kernel) -> None:
    kernel.run("%load_ext agentnb")
    kernel.run("%agent_server start --name x --log-level DEBUG")
    assert kernel.run(CALLS).stdout.split("\n")[:2] == ["3", "failed: division by zero"]

    logs = kernel.run("%agent_server logs x").stdout
    lines = logs.splitlines()
    assert len([line for line in lines if "INFO agent server x listening on" in line]) == 1, logs
    assert any(" INFO agent created: __main__.Sums 'S0' (id " in line for line in lines), logs
    assert any(" DEBUG S0.add done in " in line for line in lines), logs
    assert any(" INFO S0.divide failed after " in line and "ZeroDivisionError: division by zero" in line
               for line in lines), logs


def test_a_bad_log_level_is_a_usage_error_naming_the_levels(kernel: Kernel) -> None:
    kernel.run("%load_ext agentnb")
    result = kernel.run("%agent_server start --name y --log-level LOUD", expect_error=True)
    assert result.ename == "UsageError"
    assert "--log-level" in result.evalue and "'DEBUG', 'INFO', 'WARNING', 'ERROR'" in result.evalue
    assert "LOUD" in result.evalue
    assert read_record("y") is None  # nothing started
    assert "--log-level" in kernel.run("%agent_server start --help").stdout
