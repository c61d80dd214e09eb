"""%agent_server start --replicas N from a real kernel: a pool of daemons acting as one target."""

from __future__ import annotations

import textwrap

from kernel_fixtures import Kernel

from agentnb.runtime_dir import pid_alive, read_record, recorded_pools

LOAD = "%load_ext agentnb\nimport agentnb"

CELL_AGENT = textwrap.dedent("""
    import os

    class Where(agentnb.AgentBase):
        def pid(self):
            return os.getpid()
""")


def pids_of(kernel: Kernel, expression: str) -> list[int]:
    return [int(p) for p in kernel.run(f"print(*[a.pid() for a in {expression}])").stdout.split()]


def test_a_pool_of_daemons_from_a_notebook(kernel: Kernel) -> None:
    kernel.run(LOAD)
    started = kernel.run("%agent_server start --name farm --replicas 2 --capacity 4").stdout
    assert "Server pool 'farm' of 2 replicas running" in started
    assert "now go to them, each to the least loaded replica" in started
    assert [r.name for r in recorded_pools()["farm"]] == ["farm-0", "farm-1"]
    first, second = (read_record(f"farm-{i}").pid for i in range(2))  # type: ignore[union-attr]

    kernel.run(CELL_AGENT)
    kernel.run("agents = [Where(f'W{i}', to_dist=True) for i in range(4)]")
    assert pids_of(kernel, "agents") == [first, second, first, second]

    listing = kernel.run("%agent_server list").outputs[0]["text/plain"]
    assert "farm 1/2" in listing and "farm 2/2" in listing
    assert all(line.rstrip().endswith("*") for line in listing.splitlines() if "farm-" in line), listing
    status = kernel.run("%agent_server status farm").outputs
    assert len(status) == 2 and "W0" in status[0]["text/plain"] and "W1" in status[1]["text/plain"]
    logs = kernel.run("%agent_server logs farm -n 3").stdout
    assert "==> farm-0 <==" in logs and "==> farm-1 <==" in logs

    # A restarted kernel finds the pool again; re-attach searches both replicas.
    kernel.restart()
    kernel.run(LOAD)
    assert "go to pool 'farm'" in kernel.run("%agent_server use farm").stdout
    kernel.run("w3 = agentnb.get_agent('W3')")
    assert pids_of(kernel, "[w3]") == [second]
    assert kernel.run("print(sorted(a.name for a in agentnb.list_agents()))").stdout.strip() == \
        "['W0', 'W1', 'W2', 'W3']"

    # The restarted kernel grows the pool it did not start; its next agent goes to the new, empty replica.
    grown = kernel.run("%agent_server scale farm 3").stdout
    assert "Pool 'farm' grew to 3 replicas; this kernel's next agents go to the new ones first" in grown
    third = read_record("farm-2").pid  # type: ignore[union-attr]
    assert f"  farm-2 at {read_record('farm-2').address} (pid {third})" in grown, grown  # type: ignore[union-attr]
    assert [r.name for r in recorded_pools()["farm"]] == ["farm-0", "farm-1", "farm-2"]
    kernel.run(CELL_AGENT)
    assert pids_of(kernel, "[Where('S0', to_dist=True)]") == [third]
    assert "already has 3 replicas" in kernel.run("%agent_server scale farm 3").stdout
    shrink = kernel.run("%agent_server scale farm 2", expect_error=True)
    assert shrink.ename == "UsageError" and "does not shrink: farm has 3 replicas" in shrink.evalue

    # One replica stopped: new agents go to the others, the pool stays the default.
    kernel.run("%agent_server stop farm-1 --grace 1")
    kernel.run(CELL_AGENT)
    assert set(pids_of(kernel, "[Where(f'N{i}', to_dist=True) for i in range(2)]")) <= {first, third}
    stopped = kernel.run("%agent_server stop farm --grace 1").stdout
    assert "Stopped 'farm-0', 'farm-2'." in stopped and "now go to a child server" in stopped
    assert not any(pid_alive(pid) for pid in (first, second, third))


def test_replicas_options_are_checked(kernel: Kernel) -> None:
    kernel.run(LOAD)
    wrong = kernel.run("%agent_server start --replicas 2 --port 5999", expect_error=True)
    assert "each take a free port" in wrong.evalue
    wrong = kernel.run("%agent_server start --replicas 0", expect_error=True)
    assert "--replicas" in wrong.evalue and "at least 1" in wrong.evalue
    kernel.run("%agent_server start --name solo --no-default")
    taken = kernel.run("%agent_server start --name solo --replicas 2", expect_error=True)
    assert "already running" in taken.evalue
    lone = kernel.run("%agent_server scale solo 2", expect_error=True)
    assert "'solo' is a lone daemon, not a pool" in lone.evalue
    missing = kernel.run("%agent_server scale nowhere 2", expect_error=True)
    assert "nowhere" in missing.evalue
    assert "required: replicas" in kernel.run("%agent_server scale solo", expect_error=True).evalue
    assert recorded_pools() == {}
