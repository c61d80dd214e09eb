"""%agent_server start --launcher ray from a real kernel, on the session's two-node Ray cluster
(``engines_fixtures.ray_cluster``): a daemon pool of Ray actors, listed with where each runs,
stopped with no actor left."""

from __future__ import annotations

import textwrap

from engines_fixtures import RayCluster
from helpers_runtime import wait_for
from kernel_fixtures import Kernel

from agentnb.launch.ray_launcher import NAMESPACE, actor_name, connect

CELL_AGENT = textwrap.dedent("""
    import os
    import agentnb

    class Where(agentnb.AgentBase):
        def pid(self):
            return os.getpid()
""")


def actor_alive(ray: object, name: str) -> bool:
    try:
        ray.get_actor(actor_name(name), namespace=NAMESPACE)  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True


def test_a_ray_pool_from_a_notebook_is_listed_where_it_runs_and_stopped(kernel: Kernel,
                                                                        ray_cluster: RayCluster) -> None:
    kernel.run("%load_ext agentnb")
    started = kernel.run(f"%agent_server start --name rk --replicas 2 --launcher ray --address {ray_cluster.address} "
                         "--servers-per-node 1 --cpus-per-server 0.5", timeout=180).stdout
    assert "Server pool 'rk' of 2 replicas running" in started, started
    assert "(ray actor agentnb-rk-0)" in started and "(ray actor agentnb-rk-1)" in started, started
    assert ray_cluster.head_ip in started and ray_cluster.worker_ip in started  # one on each node

    listing = kernel.run("%agent_server list").outputs[0]["text/plain"]
    rows = [line for line in listing.splitlines() if line.startswith("rk-")]
    assert len(rows) == 2 and all("(ray actor agentnb-rk-" in row and "rk 1/2" in listing for row in rows), listing

    kernel.run(CELL_AGENT)
    pids = kernel.run("print(*sorted({Where(f'W{i}', to_dist=True).pid() for i in range(2)}))").stdout.split()
    assert len(pids) == 2  # the pool is the kernel's default: one agent on each node's server

    ray = connect(ray_cluster.address)
    assert actor_alive(ray, "rk-0") and actor_alive(ray, "rk-1")  # detached, named: found from another process
    stopped = kernel.run("%agent_server stop rk --grace 1").stdout
    assert "Stopped 'rk-0', 'rk-1'." in stopped, stopped
    for name in ("rk-0", "rk-1"):
        wait_for(lambda n=name: not actor_alive(ray, n), timeout=30, what=f"the actor of {name} to end")
    assert "rk-" not in kernel.run("%agent_server list").text
