"""Pools started through a real Slurm (slurmctld + slurmd of this host, ``engines_fixtures``).

The servers are the steps of one real job: agents are placed on both, call each other
and pass futures server to server; the listing says where each runs; stopping the pool
(or the daemon) cancels the job; a job that Slurm ends is reported as ended.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import signal
import sys

import pytest
from agents_for_tests import Worker
from engines_fixtures import SlurmCluster
from helpers_runtime import Script, script_env, wait_for

import agentnb
from agentnb import AgentServerError, DaemonError, Msg, ServerUnavailable
from agentnb.runtime_dir import iter_records
from kernel_ext.magic_args import MagicUsageError, parse


def job_of(pool: agentnb.ServerPool) -> str:
    [job] = {r.where for r in iter_records() if r.pool == pool.name}
    return job.rsplit("job ", 1)[1].rstrip(")")


def test_a_pool_of_two_is_one_slurm_job_that_its_stop_cancels(slurm_cluster: SlurmCluster) -> None:
    with agentnb.start_pool(2, name="sfarm", launcher="slurm", launcher_options={"time": "10"}) as pool:
        records = sorted((r for r in iter_records() if r.pool == "sfarm"), key=lambda r: r.replica)
        assert [r.name for r in records] == ["sfarm-0", "sfarm-1"]
        job = job_of(pool)
        assert slurm_cluster.jobs() == [f"{job} RUNNING"]
        assert all(r.where == f"{slurm_cluster.node} (slurm job {job})" and r.launcher == "slurm" for r in records)

        a, b = Worker("a", to_dist=pool), Worker("b", to_dist=pool)
        assert {a.pid(), b.pid()} == {r.pid for r in records}  # one agent on each server
        assert a.ask(b, "across") == "b(across)"  # an agent calls one on the other replica
        assert b.reply(a.reply(Msg("user", content="x"))).result(timeout=60).content == "b(a(x))"  # server to server

        # The token is in no command line of the job's processes, nor in what Slurm shows of the job.
        token = pool.replicas[0].token
        shown = slurm_cluster.scontrol("show", "job", "-d", job)
        assert token not in shown and "AGENTNB_TOKEN" not in shown
        for record in records:
            assert token.encode() not in pathlib.Path(f"/proc/{record.pid}/cmdline").read_bytes()
        assert not list((pathlib.Path(os.environ["AGENTNB_RUNTIME_DIR"]) / "slurm").glob("*.token"))
    wait_for(lambda: slurm_cluster.jobs() == [], timeout=60, what="the pool's job to end")
    assert not [r for r in iter_records() if r.pool == "sfarm"]


def test_as_server_holds_a_slurm_pool_until_sigterm_cancels_its_job(slurm_cluster: SlurmCluster) -> None:
    token = secrets.token_urlsafe(32)
    script = Script(os.path.join(os.path.dirname(sys.executable), "as_server"), "start", "--name", "sheld",
                    "--replicas", "2", "--launcher", "slurm", "--time", "10", python=None,
                    env=script_env(AGENTNB_TOKEN=token))
    try:
        assert script.readline(120) == ("server pool sheld of 2 replicas (slurm), capacity 32 each; "
                                        "token from $AGENTNB_TOKEN:")
        replicas = [script.readline().split() for _ in range(2)]
        [job] = {line[-1].rstrip(")") for line in replicas}
        assert [r[0] for r in replicas] == ["sheld-0", "sheld-1"] and slurm_cluster.jobs() == [f"{job} RUNNING"]
        # As a client on another host would: the addresses printed, and the token handed over.
        addresses = [r[2].rsplit(":", 1) for r in replicas]
        pool = agentnb.ServerPool.connect([(host, int(port)) for host, port in addresses], token=token)
        a, b = Worker("a", to_dist=pool), Worker("b", to_dist=pool)
        assert a.ask(b, "held") == "b(held)" and a.pid() != b.pid()
        script.process.send_signal(signal.SIGTERM)
        rc, lines, stderr = script.wait(120)
        assert rc == 0 and lines[-1:] == ["server pool sheld stopped"], (lines, stderr)
        wait_for(lambda: slurm_cluster.jobs() == [], timeout=60, what="the pool's job to end")
        assert not [r for r in iter_records() if r.pool == "sheld"]
    finally:
        script.kill()
        slurm_cluster.cancel_all()  # a job left by a failure must not hold the node for the next tests


def test_a_slurm_pool_grows_by_a_further_job_and_its_stop_cancels_both(slurm_cluster: SlurmCluster) -> None:
    with agentnb.start_pool(1, name="sgrow", launcher="slurm", launcher_options={"time": "10"}) as pool:
        first_job = job_of(pool)
        first = Worker("first", to_dist=pool)
        [added] = pool.scale(2)
        records = sorted((r for r in iter_records() if r.pool == "sgrow"), key=lambda r: r.replica)
        assert [(r.name, r.replicas) for r in records] == [("sgrow-0", 2), ("sgrow-1", 2)] and added.name == "sgrow-1"
        second_job = records[1].where.rsplit("job ", 1)[1].rstrip(")")
        assert second_job != first_job
        assert sorted(slurm_cluster.jobs()) == sorted([f"{first_job} RUNNING", f"{second_job} RUNNING"])
        later = Worker("later", to_dist=pool)
        assert later.pid() == records[1].pid  # the new, empty replica takes the next agent
        assert later.ask(first, "grown") == "first(grown)"
    wait_for(lambda: slurm_cluster.jobs() == [], timeout=60, what="both jobs of the pool to end")
    assert not [r for r in iter_records() if r.pool == "sgrow"]


def test_a_daemon_pool_on_slurm_is_listed_where_it_runs_and_stop_server_cancels_it(
        slurm_cluster: SlurmCluster, daemons: None) -> None:
    farm = agentnb.start_server("farm", replicas=2, launcher="slurm", use=False)
    job = job_of(farm)
    listed = {s.record.name: s for s in agentnb.list_servers()}
    assert sorted(listed) == ["farm-0", "farm-1"]
    assert all(s.reachable and s.record.where.endswith(f"(slurm job {job})") for s in listed.values())
    worker = Worker("w", to_dist=farm)
    assert worker.reply(Msg("user", content="hi")).result(timeout=60).content == "w(hi)"
    assert "listening" in agentnb.server_logs("farm", 20)

    assert sorted(agentnb.stop_server("farm")) == ["farm-0", "farm-1"]
    wait_for(lambda: slurm_cluster.jobs() == [], timeout=60, what="the daemons' job to end")
    assert agentnb.list_servers() == []


def test_a_job_that_slurm_ends_is_reported_as_ended(slurm_cluster: SlurmCluster, daemons: None) -> None:
    farm = agentnb.start_server("gone", replicas=2, launcher="slurm", use=False)
    job = job_of(farm)
    worker = Worker("w", to_dist=farm)
    assert worker.pid() > 0
    # Its servers killed at once, as when their node fails: nothing of their own clean-up runs.
    for record in iter_records():
        os.kill(record.pid, signal.SIGKILL)

    def unavailable() -> bool:
        try:
            worker.pid()
        except ServerUnavailable:
            return True
        return False

    wait_for(unavailable, timeout=15, what="the agent to raise ServerUnavailable")
    wait_for(lambda: slurm_cluster.jobs() == [], timeout=30, what="the job to end")
    statuses = agentnb.describe_server("gone")
    assert len(statuses) == 2
    assert all(not s.reachable and f"slurm job {job} ended: " in s.error for s in statuses), statuses
    assert sorted(agentnb.stop_server("gone")) == ["gone-0", "gone-1"]
    assert agentnb.list_servers() == []


def test_servers_that_fail_to_start_end_their_job_and_say_why(slurm_cluster: SlurmCluster) -> None:
    with pytest.raises(AgentServerError, match=r"slurm job \d+ ended: \w+.*before its servers listened"):
        agentnb.start_pool(2, name="broken", capacity=0, launcher="slurm")
    wait_for(lambda: slurm_cluster.jobs() == [], timeout=60, what="the failed job to end")


def test_wrong_launchers_and_options_are_named_before_anything_starts(daemons: None) -> None:
    with pytest.raises(ValueError, match="unknown launcher 'k8s': use one of local, slurm"):
        agentnb.start_pool(2, launcher="k8s")
    with pytest.raises(ValueError, match="unknown option.*slurm launcher: queue; it takes partition, time"):
        agentnb.start_pool(2, launcher="slurm", launcher_options={"queue": "x"})
    with pytest.raises(ValueError, match="the local launcher takes no options, got partition"):
        agentnb.start_pool(2, launcher_options={"partition": "x"})
    with pytest.raises(DaemonError, match="--launcher slurm: slurm option time must be"):
        agentnb.start_server("bad", launcher="slurm", launcher_options={"time": "soon"})
    with pytest.raises(DaemonError, match="--host and --port choose a local daemon"):
        agentnb.start_server("bad", launcher="slurm", port=4242)
    with pytest.raises(MagicUsageError, match="--partition only apply to --launcher slurm, not local"):
        parse("start --partition debug")
    with pytest.raises(MagicUsageError, match="--cpus-per-server for slurm is a whole number of at least 1, got 0.5"):
        parse("start --launcher slurm --cpus-per-server 0.5")
    with pytest.raises(MagicUsageError, match="invalid choice: 'nomad'"):
        parse("start --launcher nomad")
    args = parse("start --name f --replicas 2 --launcher slurm --partition debug --time 5 --sbatch=--qos=short")
    assert args.launcher_options == {"partition": "debug", "time": "5", "sbatch_lines": ["--qos=short"]}
    assert parse("start --launcher slurm --cpus-per-server 2").launcher_options == {"cpus_per_server": 2}
    assert agentnb.list_servers() == []
