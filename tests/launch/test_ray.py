"""Pools started through a real two-node Ray cluster (``engines_fixtures.ray_cluster``).

A head on this host and a worker node in a network namespace: a daemon pool of detached actors,
grown and stopped by name; a pool grown by more actors; the token in no Ray log nor state listing;
a pool through the ``ray://`` client address; a pool of one server per node, agents on both calling
each other, then the worker node killed: its agents raise ServerUnavailable within seconds while
the head's keep answering, and the listing says the node died. That test kills a node: it stays
last of the ones using the cluster here, and starts a new worker node when it ends.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import sys
import time

import pytest
from agents_for_tests import Worker
from engines_fixtures import RayCluster
from helpers_runtime import script_env, wait_for

import agentnb
from agentnb import Msg, ServerUnavailable
from agentnb.runtime_dir import iter_records
from kernel_ext.magic_args import MagicUsageError, parse


def unavailable(worker: Worker) -> bool:
    try:
        worker.pid()
    except ServerUnavailable:
        return True
    return False


def test_a_daemon_pool_on_ray_is_detached_named_actors_that_stop_server_kills(
        ray_cluster: RayCluster, daemons: None) -> None:
    # Before the test that kills the worker node: this one uses both nodes (the default spread).
    import ray

    farm = agentnb.start_server("rdaemon", replicas=2, launcher="ray",
                                launcher_options={"address": ray_cluster.address}, use=False)
    listed = {s.record.name: s for s in agentnb.list_servers()}
    assert sorted(listed) == ["rdaemon-0", "rdaemon-1"]
    assert all(s.reachable and s.record.where.endswith(f"(ray actor agentnb-{n})") for n, s in listed.items())
    worker = Worker("w", to_dist=farm)
    assert worker.reply(Msg("user", content="hi")).result(timeout=60).content == "w(hi)"
    for name in listed:  # found by name, as a restarted kernel would
        assert ray.get_actor(f"agentnb-{name}", namespace="agentnb") is not None

    other = Worker("w1", to_dist=farm)
    assert other.pid() != worker.pid()  # the first two replicas have an agent each
    # Grown by one more detached actor, recorded as the pool's third replica.
    [added] = agentnb.find_server("rdaemon").scale(3)
    listed = {s.record.name: s for s in agentnb.list_servers()}
    assert sorted(listed) == ["rdaemon-0", "rdaemon-1", "rdaemon-2"] and added.name == "rdaemon-2"
    assert listed["rdaemon-2"].reachable and listed["rdaemon-2"].record.replicas == 3
    assert listed["rdaemon-2"].record.where.endswith("(ray actor agentnb-rdaemon-2)")
    assert Worker("w2", to_dist=agentnb.find_server("rdaemon")).pid() == listed["rdaemon-2"].record.pid

    assert sorted(agentnb.stop_server("rdaemon")) == ["rdaemon-0", "rdaemon-1", "rdaemon-2"]
    assert agentnb.list_servers() == []
    for name in listed:
        wait_for(lambda n=name: not actor_exists(ray, f"agentnb-{n}"), timeout=30, what=f"the actor of {name} to end")


def actor_exists(ray: object, name: str) -> bool:
    try:
        ray.get_actor(name, namespace="agentnb")  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True


def status_error(name: str) -> str:
    return next((s.error for s in agentnb.list_servers() if s.record.name == name), "")


def live_placement_groups(ray: object) -> list[str]:
    table = ray.util.placement_group_table()  # type: ignore[attr-defined]
    return sorted(g["name"] for g in table.values() if g["state"] != "REMOVED")


def test_a_ray_pool_grows_through_more_actors_that_take_the_next_agents(ray_cluster: RayCluster) -> None:
    import ray

    options = {"address": ray_cluster.address, "cpus_per_server": 0.5}
    with agentnb.start_pool(1, name="rgrow", launcher="ray", launcher_options=options) as pool:
        first = Worker("first", to_dist=pool)
        added = pool.scale(3)
        assert [r.name for r in added] == ["rgrow-1", "rgrow-2"]
        records = sorted((r for r in iter_records() if r.pool == "rgrow"), key=lambda r: r.replica)
        assert [(r.name, r.replicas) for r in records] == [(f"rgrow-{i}", 3) for i in range(3)]
        assert all(r.where.endswith(f"(ray actor agentnb-{r.name})") for r in records)
        assert {r.host for r in records[1:]} == {ray_cluster.head_ip, ray_cluster.worker_ip}  # spread, as the first
        later = [Worker(f"later{i}", to_dist=pool) for i in range(2)]
        assert {w.pid() for w in later} == {r.pid for r in records[1:]}  # the new replicas take them at once
        assert later[0].ask(first, "grown") == "first(grown)"
        assert live_placement_groups(ray) == ["agentnb-rgrow", "agentnb-rgrow-1"]  # one per start
    assert not [r for r in iter_records() if r.pool == "rgrow"]
    for name in ("rgrow-0", "rgrow-1", "rgrow-2"):  # the pool's stop ends the actors it grew too
        wait_for(lambda n=name: not actor_exists(ray, f"agentnb-{n}"), timeout=30, what=f"the actor of {name} to end")
    wait_for(lambda: not live_placement_groups(ray), timeout=30, what="the placement groups to be removed")


def files_holding(folders: list[pathlib.Path], secret: bytes) -> list[str]:
    """The regular files under ``folders`` whose bytes contain ``secret``."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
                    found.append(str(path))
    return found


def test_the_token_is_in_no_ray_log_nor_in_its_gcs_tables(ray_cluster: RayCluster) -> None:
    import ray
    from ray._private import state

    options = {"address": ray_cluster.address, "servers_per_node": 1}
    with agentnb.start_pool(2, name="rsecret", launcher="ray", launcher_options=options) as pool:
        token = pool.replicas[0].token
        assert {Worker(f"s{i}", to_dist=pool).pid() for i in range(2)}  # calls made: whatever Ray logs, it has
        # What the dashboard would show is read from the GCS: its actor, job, node and placement group
        # tables and its task events (the timeline). (The test cluster has no dashboard, so the state
        # API, ray.util.state, cannot be asked: Ray is installed without its `default` extra.)
        tables = repr([state.actors(), state.jobs(), ray.nodes(), ray.util.placement_group_table(),
                       state.timeline()])
        assert "ServerActor" in tables and "agentnb-rsecret-0" in tables  # the tables are of these actors
        assert token not in tables
        # Every file of the session folders of both nodes (logs, GCS and raylet state, spilled objects).
        folders = [ray_cluster.temp_dir, *(p for p in [pathlib.Path("/tmp/ray")] if p.is_dir())]
        assert any(folder.is_dir() and any(folder.rglob("*.log")) for folder in folders)
        assert files_holding(folders, token.encode()) == []


def ray_client_server_logs(ray_cluster: RayCluster) -> str:
    """The head's Ray client server logs (the proxy's and each client's own server's), to read on a failure."""
    logs = sorted(ray_cluster.temp_dir.glob("session_*/logs/ray_client_server*"))
    return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}" for log in logs)


RAY_CLIENT = """
import sys
import agentnb
from agents_for_tests import Worker
from agentnb import Msg
options = {"address": sys.argv[1], "cpus_per_server": 0.5}
with agentnb.start_pool(1, name="rclient", launcher="ray", launcher_options=options) as pool:
    print(Worker("c", to_dist=pool).reply(Msg("user", content="via ray://")).result(timeout=60).content)
    print(pool.replicas[0].name, agentnb.list_servers()[0].record.where)
"""


def test_a_pool_through_the_ray_client_address(ray_cluster: RayCluster) -> None:
    # In a process of its own: this one is already a driver of the cluster, and Ray has one connection per process.
    address = f"ray://{ray_cluster.head_ip}:{ray_cluster.client_port}"
    done = subprocess.run([sys.executable, "-c", RAY_CLIENT, address], capture_output=True, text=True, timeout=240,
                          env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:] + ray_client_server_logs(ray_cluster)
    answer, where = done.stdout.splitlines()[-2:]
    assert answer == "c(via ray://)" and where.startswith("rclient-0 ") and where.endswith(
        " (ray actor agentnb-rclient-0)"), done.stdout
    assert not [r for r in iter_records() if r.pool == "rclient"]


def test_the_start_benchmark_times_ray_replicas_beside_plain_ray_actors(ray_cluster: RayCluster) -> None:
    before = {r.name for r in iter_records()}
    run = subprocess.run([sys.executable, "-m", "agentnb.bench.cluster_start", "--launcher", "ray", "--option",
                          f"address={ray_cluster.address}", "--option", "cpus_per_server=0.25", "--replicas", "2",
                          "--trials", "1", "--plain-actors"], capture_output=True, text=True, timeout=240,
                         env=script_env(), stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ray 2 replicas: median " in run.stdout and "2 plain ray actors: median " in run.stdout, run.stdout
    assert {r.name for r in iter_records()} == before  # its pools were stopped


def test_a_pool_of_one_server_per_node_survives_the_loss_of_a_node(ray_cluster: RayCluster) -> None:
    try:
        options = {"address": ray_cluster.address, "servers_per_node": 1}
        with agentnb.start_pool(2, name="rfarm", launcher="ray", launcher_options=options) as pool:
            records = sorted((r for r in iter_records() if r.pool == "rfarm"), key=lambda r: r.replica)
            assert [r.name for r in records] == ["rfarm-0", "rfarm-1"]
            assert {r.host for r in records} == {ray_cluster.head_ip, ray_cluster.worker_ip}  # one on each node
            assert all(r.launcher == "ray" and r.where.endswith(f"(ray actor agentnb-{r.name})") for r in records)
            on_worker = next(r for r in records if r.host == ray_cluster.worker_ip)
            assert on_worker.pid in ray_cluster.worker_pids()

            a, b = Worker("a", to_dist=pool), Worker("b", to_dist=pool)
            assert {a.pid(), b.pid()} == {r.pid for r in records}  # one agent on each server
            assert a.ask(b, "across") == "b(across)"  # an agent calls one on the other node
            assert b.reply(a.reply(Msg("user", content="x"))).result(timeout=60).content == "b(a(x))"

            token = pool.replicas[0].token
            for record in records:  # never on a command line
                assert token.encode() not in pathlib.Path(f"/proc/{record.pid}/cmdline").read_bytes()

            far, near = (a, b) if a.pid() == on_worker.pid else (b, a)
            ray_cluster.kill_worker_node()
            started = time.monotonic()
            wait_for(lambda: unavailable(far), timeout=10, what="the lost node's agent to raise ServerUnavailable")
            lost_after = time.monotonic() - started
            assert near.reply(Msg("user", content="still")).result(timeout=30).content.endswith("(still)")
            print(f"ServerUnavailable {lost_after:.2f} s after the node was killed")
            # Listings say why the replica does not answer: what Ray says of its node (once Ray knows).
            wait_for(lambda: f"ray node {ray_cluster.worker_ip} died" in status_error(on_worker.name), timeout=120,
                     what="the listing to say the replica's Ray node died")
            [described] = agentnb.describe_server(on_worker.name)
            assert described.error.startswith(f"ray node {ray_cluster.worker_ip} died")
            assert "(with actor agentnb-rfarm-" in described.error, described.error
        assert not [r for r in iter_records() if r.pool == "rfarm"]
    finally:  # the tests after this one (in this session) find two nodes again
        ray_cluster.restart_worker_node()


def test_wrong_ray_options_are_named_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown option.*ray launcher: nodes; it takes address, servers_per_node"):
        agentnb.start_pool(2, launcher="ray", launcher_options={"nodes": 2})
    with pytest.raises(ValueError, match="servers_per_node must be a whole number"):
        agentnb.start_pool(2, launcher="ray", launcher_options={"servers_per_node": 0})
    # The same options from %agent_server start.
    args = parse("start --name f --replicas 4 --launcher ray --address ray://head:10001 --servers-per-node 2 "
                 "--cpus-per-server 0.5")
    assert args.launcher_options == {"address": "ray://head:10001", "servers_per_node": 2, "cpus_per_server": 0.5}
    with pytest.raises(MagicUsageError, match="--partition only apply to --launcher slurm, not ray"):
        parse("start --launcher ray --partition debug")
    with pytest.raises(MagicUsageError, match="--address, --servers-per-node only apply to --launcher ray, not local"):
        parse("start --address auto --servers-per-node 1")


NO_RAY = """
import sys
import agentnb
from agentnb.launch.launchers import check_launcher, cluster_launcher
check_launcher("ray", {"servers_per_node": 1})
cluster_launcher("ray", {"address": "ray://head:10001"})
pool = agentnb.start_pool(1)
pool.stop()
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "ray was imported"
"""


def test_agentnb_and_its_local_pools_never_import_ray() -> None:
    done = subprocess.run([sys.executable, "-c", NO_RAY], capture_output=True, text=True, timeout=120,
                          env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
