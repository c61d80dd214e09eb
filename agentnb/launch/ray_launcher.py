"""The Ray launcher: each server of a pool lives in a Ray actor on the node Ray placed it on.

This process connects to a running Ray cluster (``address``: ``auto`` for the one this
machine belongs to, ``host:port`` of its head, or a ``ray://`` client address). Each
replica is an actor named ``agentnb-<replica>`` (namespace ``agentnb``) whose ``start``
runs ``python -m agentnb.server`` on its node, bound to the node's address beyond loopback
(its token guards it), and returns where it listens. The server ends with its actor
(``--exit-with-parent``: its standard input is a pipe the actor holds), so an actor
killed, or a node lost, takes its server with it.

Where the actors go: by default a placement group of one bundle per server
(``cpus_per_server`` CPUs each), spread over the nodes as far as Ray can; with
``servers_per_node=k``, ``k`` on each live node in turn, pinned by node affinity. A pool that grows
(:meth:`agentnb.ServerPool.scale`) places its new servers the same way: a placement group of
their own, or the nodes' free slots (the pool's servers already on a node count).

The token is an argument of the actor's ``start`` call: Ray neither logs task arguments
nor shows them in its dashboard or state API (the actors' and tasks' listings show
class, method, name and resources); the server gets it through its environment, never
on its command line. For a daemon pool (``start_server``) the actors, and their
placement group, are detached: they outlive the kernel, and a restarted kernel finds
them by name; for ``start_pool`` they end with this process's Ray connection.

``ray`` is imported only here, and only when a pool is started or stopped with this
launcher (the ``agentnb[ray]`` extra installs it).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from agentnb.errors import AgentServerError
from agentnb.launch.command import import_path
from agentnb.launch.launched import OwnLaunches, ServerSpec
from agentnb.runtime_dir import (
    HANDLE_KEY,
    LAUNCHER_KEY,
    NODE_KEY,
    ServerRecord,
    mark_replica,
    read_record,
    recorded_pools,
    remove_record,
    runtime_dir,
    write_record,
)
from agentnb.runtime_home import ENV_DIR

NAME = "ray"
NAMESPACE = "agentnb"
ADDRESS_KEY = "ray_address"  # in the servers' records: the cluster another process connects to, to stop them
GROUP_KEY = "ray_placement_group"  # in the servers' records: the placement group their actors were placed by
STOP_TIMEOUT = 30.0


def actor_name(replica: str) -> str:
    """The Ray actor of the server ``replica`` (in namespace ``agentnb``)."""
    return f"agentnb-{replica}"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AgentServerError("the ray launcher needs Ray: pip install 'agentnb[ray]'") from None
    return ray


CLIENT_ATTEMPTS = 3  # a ray:// head starts a server process per client; on a loaded head that start can fail


def connect(address: str) -> Any:
    """The ``ray`` module, connected to the cluster at ``address`` (unless this process already is).

    Through a ``ray://`` address, a refused start of the head's per-client server
    (``ConnectionAbortedError``) is tried again, twice, a second apart and then two.
    """
    ray = _ray()
    attempt = 1
    while not ray.is_initialized():
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
        except ConnectionAbortedError as exc:
            if not address.startswith("ray://") or attempt == CLIENT_ATTEMPTS:
                raise AgentServerError(f"cannot connect to the Ray cluster at {address!r} ({attempt} tries; the "
                                       "head's ray_client_server_*.err logs say more): "
                                       f"ConnectionAbortedError: {exc}") from None
            time.sleep(attempt)
            attempt += 1
        except Exception as exc:  # noqa: BLE001 (Ray raises ConnectionError, RuntimeError, its own errors)
            raise AgentServerError(f"cannot connect to the Ray cluster at {address!r}: "
                                   f"{type(exc).__name__}: {exc}") from None
    return ray


class ServerActor:
    """The body of a replica's Ray actor: it starts the server on its node and holds it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self, args: list[str], token: str, env: dict[str, str], python_path: list[str]) -> dict[str, Any]:
        """Start the server (``args`` of ``python -m agentnb.server``); return its host, port, pid and node."""
        import ray

        from agentnb.launch.command import spawn_server

        host = ray.util.get_node_ip_address()
        # After the options of server_argv: the last --host wins.
        args = [*args, "--host", host, "--no-local-mode", "--exit-with-parent"]
        self.process, port = spawn_server(args, token, extra_env=env, python_path=python_path)
        return {"host": host, "port": port, "pid": self.process.pid, "node": socket.gethostname()}

    def stop(self, grace: float) -> None:
        """SIGTERM to the server (its running calls get its ``--grace``), SIGKILL after ``grace`` + 5 s."""
        from agentnb.launch.command import stop_process

        if self.process is not None:
            stop_process(self.process, grace + 5.0, close_stdin=False)


@dataclass(frozen=True)
class RayLauncher:
    """Where the servers' actors go (each attribute an option of ``start_pool(launcher="ray", ...)``).

    Attributes:
        address: the cluster: ``auto`` (the one this machine is part of), its head's
            ``host:port``, or ``ray://host:port``.
        servers_per_node: this many servers on each live node in turn (node affinity); when
            None, one placement group bundle per server, spread over the nodes.
        cpus_per_server: CPUs Ray reserves for each server's actor (may be a fraction).
        start_timeout: seconds the servers may take to be placed and to listen.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("address", "servers_per_node", "cpus_per_server", "start_timeout")
    name: ClassVar[str] = NAME

    address: str = "auto"
    servers_per_node: int | None = None
    cpus_per_server: float = 1.0
    start_timeout: float = 120.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RayLauncher:
        """The launcher of ``options``; ValueError names an unknown option (and the known ones) or a wrong value."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown option(s) for the ray launcher: {', '.join(unknown)}; "
                             f"it takes {', '.join(cls.OPTIONS)}")
        launcher = cls(**dict(options))
        launcher.check()
        return launcher

    def check(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ValueError(f"ray option address must be 'auto', host:port or ray://host:port, got {self.address!r}")
        if self.servers_per_node is not None and (not isinstance(self.servers_per_node, int)
                                                  or self.servers_per_node < 1):
            raise ValueError(f"ray option servers_per_node must be a whole number of at least 1, "
                             f"got {self.servers_per_node!r}")
        if not isinstance(self.cpus_per_server, int | float) or self.cpus_per_server < 0:
            raise ValueError(f"ray option cpus_per_server must be a number of CPUs (0 or more), "
                             f"got {self.cpus_per_server!r}")
        if self.start_timeout <= 0:
            raise ValueError(f"ray option start_timeout must be a positive number of seconds, "
                             f"got {self.start_timeout!r}")

    def start(self, pool_name: str, names: Sequence[str], spec: ServerSpec, first_index: int = 0) -> RayServers:
        """Place one actor per server, start the servers, and wait until each listens.

        ``first_index`` is the pool index of the first (more than 0 when a pool grows): each
        start has its own placement group, ``agentnb-<pool>`` then ``agentnb-<pool>-<first_index>``.

        Raises:
            AgentServerError: Ray is not installed or not reachable, the cluster has too few
                nodes or CPUs, or a server did not start in time (none is left running then).
        """
        ray = connect(self.address)
        detached = spec.record_kind == "daemon"
        group = f"agentnb-{pool_name}" + (f"-{first_index}" if first_index else "")
        servers = RayServers(self._recorded_address(ray), [actor_name(n) for n in names],
                             placement_group=None if self.servers_per_node else group)
        _live.add(servers)
        try:
            # A growing pool's servers already placed count against servers_per_node on their nodes.
            placed = Counter(r.host for r in recorded_pools().get(pool_name, []) if r.name not in names)
            strategies = self._strategies(ray, group, len(names), detached, placed)
            remote = ray.remote(ServerActor)
            actors = [remote.options(name=actor_name(n), namespace=NAMESPACE, scheduling_strategy=s,
                                     num_cpus=self.cpus_per_server, max_restarts=0,
                                     lifetime="detached" if detached else None).remote()
                      for n, s in zip(names, strategies, strict=True)]
            servers.handles = actors  # a non-detached actor ends when no handle refers to it any more
            env = {**spec.extra_env, ENV_DIR: str(runtime_dir())}
            started = [a.start.remote(spec.args_for(n), spec.token, env, import_path())
                       for a, n in zip(actors, names, strict=True)]
            ready, waiting = ray.wait(started, num_returns=len(started), timeout=self.start_timeout)
            if waiting:
                raise AgentServerError(f"{len(waiting)} of {len(names)} servers were not placed and listening "
                                       f"within {self.start_timeout:g} s (too few nodes or CPUs free in the "
                                       f"Ray cluster?)")
            try:
                where = ray.get(started)
            except Exception as exc:  # noqa: BLE001 (a RayTaskError carries the server's own error)
                raise AgentServerError(f"a server did not start in its Ray actor: {exc}") from None
            servers.records = [self._record(pool_name, n, first_index + i, first_index + len(names), spec, w,
                                            servers)
                               for i, (n, w) in enumerate(zip(names, where, strict=True))]
        except BaseException:
            servers.shutdown(grace=0.0)
            raise
        return servers

    def _recorded_address(self, ray: Any) -> str:
        if self.address.startswith("ray://"):
            return self.address
        with contextlib.suppress(Exception):
            return str(ray.get_runtime_context().gcs_address)
        return self.address

    def _strategies(self, ray: Any, group_name: str, count: int, detached: bool,
                    placed: Mapping[str, int]) -> list[Any]:
        """Where each of ``count`` servers goes; ``placed`` counts the pool's servers already on
        each node (by its address), when it grows."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

        if self.servers_per_node:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            slots = [n["NodeID"] for n in nodes
                     for _ in range(max(0, self.servers_per_node - placed.get(n["NodeManagerAddress"], 0)))]
            if count > len(slots):
                already = f" ({sum(placed.values())} already placed)" if placed else ""
                raise AgentServerError(f"{count} more servers at {self.servers_per_node} per node do not fit: the "
                                       f"Ray cluster has {len(nodes)} live nodes, room for {len(slots)}{already}")
            return [NodeAffinitySchedulingStrategy(node, soft=False) for node in slots[:count]]
        bundle = {"CPU": self.cpus_per_server} if self.cpus_per_server else {"CPU": 0.001}
        group = ray.util.placement_group([bundle] * count, strategy="SPREAD", name=group_name,
                                         lifetime="detached" if detached else None)
        ready, _ = ray.wait([group.ready()], timeout=self.start_timeout)
        if not ready:
            raise AgentServerError(f"the Ray cluster has no room for {count} servers of {self.cpus_per_server:g} "
                                   f"CPU within {self.start_timeout:g} s")
        return [PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i) for i in range(count)]

    def _record(self, pool_name: str, name: str, index: int, count: int, spec: ServerSpec,
                where: dict[str, Any], servers: RayServers) -> ServerRecord:
        handle = {LAUNCHER_KEY: NAME, HANDLE_KEY: f"actor {actor_name(name)}", ADDRESS_KEY: servers.address,
                  GROUP_KEY: ",".join(servers.placement_groups)}
        record = read_record(name)
        if record is None:  # a node that does not share the runtime directory: record it here
            record = ServerRecord(name, where["host"], int(where["port"]), int(where["pid"]), spec.token,
                                  kind=spec.record_kind, started=time.time(), extra={NODE_KEY: where["node"]})
            write_record(record)
        return mark_replica(name, pool_name, index, count, **handle) or record


class RayServers:
    """The actors of a pool's servers (and their placement group): how to end them."""

    def __init__(self, address: str, actors: Sequence[str], records: Sequence[ServerRecord] = (),
                 placement_group: str | Sequence[str] | None = None) -> None:
        self.address = address
        self.actors = list(actors)
        self.records = list(records)
        self.placement_groups = ([placement_group] if isinstance(placement_group, str)
                                 else list(placement_group or ()))
        self.handles: list[Any] = []
        self._stopped = False

    def __repr__(self) -> str:
        return f"RayServers({self.address}, {len(self.actors)} actors)"

    def covers(self, host: str, port: int) -> bool:
        return any(record.is_at(host, port) for record in self.records)

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop each server (its running calls get ``grace`` s), kill its actor, remove the placement group."""
        if self._stopped:
            return
        self._stopped = True
        _live.discard(self)
        ray = connect(self.address)
        handles, self.handles = self.handles, []
        if not handles:  # another process's pool (a daemon's): its actors by name
            for name in self.actors:
                with contextlib.suppress(ValueError):  # an actor never created, or gone with its node
                    handles.append(ray.get_actor(name, namespace=NAMESPACE))
        if grace > 0:
            stops = [h.stop.remote(grace) for h in handles]
            ray.wait(stops, num_returns=len(stops), timeout=grace + STOP_TIMEOUT)
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        for group in self.placement_groups:
            with contextlib.suppress(Exception):
                ray.util.remove_placement_group(ray.util.get_placement_group(group))
        for record in self.records:
            remove_record(record.name)


_live: OwnLaunches = OwnLaunches()  # stopped at exit unless they are daemons


def stop_recorded(records: Sequence[ServerRecord], grace: float) -> None:
    """Stop the servers of ``records`` through the Ray cluster that runs their actors."""
    by_address: dict[str, list[ServerRecord]] = {}
    for record in records:
        by_address.setdefault(str(record.extra.get(ADDRESS_KEY, "auto")), []).append(record)
    for address, members in by_address.items():
        groups = {str(r.extra.get(GROUP_KEY) or "") for r in members} - {""}
        RayServers(address, [actor_name(r.name) for r in members], members, sorted(groups)).shutdown(grace)


def replica_state(record: ServerRecord) -> str:
    """What Ray says of the node and actor of ``record``'s server once they are gone
    (``ray node 10.0.0.2 died: ...``, ``ray actor agentnb-farm-1 ended``); empty while both live."""
    ray = connect(str(record.extra.get(ADDRESS_KEY, "auto")))
    on_node = [n for n in ray.nodes() if n.get("NodeManagerAddress") == record.host]
    if on_node and not any(n.get("Alive") for n in on_node):
        reason = next((str(n.get("DeathReasonMessage") or "") for n in on_node), "")
        return f"ray node {record.host} died" + (f": {reason}" if reason else "") + \
            f" (with actor {actor_name(record.name)})"
    try:
        ray.get_actor(actor_name(record.name), namespace=NAMESPACE)
    except ValueError:
        return f"ray actor {actor_name(record.name)} ended"
    return ""
