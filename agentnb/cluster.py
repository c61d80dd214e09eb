"""Your agent servers as a whole: start, find, describe, choose and stop them.

The public API for servers (what ``%agent_server`` shows in a notebook, and
what a script calls directly):

- :func:`start_server`: a daemon (or a pool of daemons) that outlives this process;
- :func:`start_pool`: servers that are children of this process and end with it;
- :func:`find_server`: a running daemon or pool, by name, as a :class:`ServerPool`;
- :func:`list_servers` and :func:`describe_server`: what runs, with live figures and agents;
- :func:`server_logs`, :func:`use_server`, :func:`default_server_name`, :func:`stop_server`;
- :func:`server_calls`: a server's recent calls, for :func:`agentnb.timeline`.

Independent servers are started by hand (``as_server start``) or with
:class:`agentnb.RpcAgentServerLauncher`; :func:`agentnb.get_agent` and
``to_dist={"host": ..., "port": ...}`` reach them.

Processes are started and stopped by :mod:`agentnb.launch`; this module adds
what needs a connection: asking servers how they are, and placing this
process's agents on them (:mod:`agentnb.rpc.placement`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentnb._proto import agentnb_pb2 as pb
from agentnb.concurrently import gather, run_together
from agentnb.config import server_environment
from agentnb.errors import AgentServerError, DaemonError, VersionMismatch
from agentnb.launch.command import ServerProcess, server_argv, start_server_process
from agentnb.launch.daemon_options import DaemonOptions, check_name
from agentnb.launch.daemons import (
    DAEMON_KIND,
    DEFAULT_STOP_GRACE,
    DaemonProcesses,
    check_free,
    free_name,
    log_path_for,
    log_tail,
    naming_lock,
)
from agentnb.launch.launchers import LOCAL, ServerSpec, check_launcher, cluster_launcher, engine_state, stop_launched
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.placement import clear_default_server, default_pool, set_default_pool
from agentnb.rpc.server_pool import Replica, ReplicaStarter, ServerPool, StartedServer
from agentnb.runtime_dir import (
    OPTIONS_KEY,
    ServerRecord,
    iter_records,
    mark_replica,
    read_record,
    recorded_pools,
    replica_name,
)
from agentnb.timeline import CallRecord

__all__ = [
    "DaemonOptions",
    "DaemonRegistry",
    "ServerStatus",
    "default_server_name",
    "describe_server",
    "find_server",
    "list_servers",
    "server_calls",
    "server_logs",
    "start_pool",
    "start_server",
    "stop_server",
    "use_server",
]

INFO_TIMEOUT = 5.0


@dataclass
class ServerStatus:
    """A recorded server as seen now: its record and, if it answered, its live figures.

    Attributes:
        record: what the server recorded of itself (name, address, pid, log file, pool).
        info: its live figures (capacity, busy, queued, agents, started, version), or
            None if it did not answer.
        error: why it did not answer.
        is_default: this process places its new agents on it.
        agents: the agents it hosts (filled by :func:`describe_server`).
        version: the agentnb version it runs, as it told it (also when that version does not work
            with this one: then ``info`` is None and ``error`` says so); empty when it did not tell.
        ended: when it did not answer, what the engine that started it says of it
            (``slurm job 12 ended: TIMEOUT``, ``ray node 10.0.0.2 died``); empty otherwise.
    """

    record: ServerRecord
    info: pb.ServerInfo | None = None
    error: str = ""
    is_default: bool = False
    agents: list[pb.AgentDescription] = field(default_factory=list)
    version: str = ""
    ended: str = ""

    @property
    def reachable(self) -> bool:
        return self.info is not None

    @property
    def uptime(self) -> float:
        started = (self.info.started if self.info is not None else 0.0) or self.record.started
        return max(0.0, time.time() - started) if started else 0.0


def _in_pool(record: ServerRecord, pool: ServerPool) -> bool:
    return any(record.is_at(replica.host, replica.port) for replica in pool.replicas)


def _info(record: ServerRecord) -> pb.ServerInfo:
    return ServerConnection.get(record.host, record.port, record.token).info(timeout=INFO_TIMEOUT)


def _check_answers(record: ServerRecord, failure: str) -> None:
    """DaemonError ``the agent server NAME <failure>: why`` unless ``record``'s server answers GetInfo."""
    try:
        _info(record)
    except (AgentServerError, TimeoutError) as exc:
        raise DaemonError(f"the agent server {record.name!r} {failure}: {exc}") from None


class DaemonRegistry:
    """Starts, finds, describes, selects and stops this user's agent-server daemons.

    One registry per process is enough (the module's functions share one);
    the state it shares with other processes lives in the runtime directory.
    It keeps little of its own: the processes it started (to reap them) and
    which default it chose (to replace it once that daemon is gone).
    """

    def __init__(self) -> None:
        self._processes = DaemonProcesses()
        self._chosen: ServerPool | None = None  # the default target this registry set

    # -- start -------------------------------------------------------------------------------

    def start(self, options: DaemonOptions | None = None, *, make_default: bool | None = None) -> ServerRecord:
        """Start a daemon and return its record once the server answers.

        Args:
            options: how to start it (see :class:`DaemonOptions`); with
                ``replicas`` above 1, use :meth:`start_pool`.
            make_default: place later ``to_dist()`` calls of this process on it;
                None (the default) does so when no default server is set yet.
        Raises:
            DaemonError: a wrong option, a name already in use, or a server that
                did not start (the message has the end of its log).
        """
        options = (options or DaemonOptions()).checked()
        if options.replicas != 1:
            raise DaemonError(f"{options.replicas} replicas make a pool: use DaemonRegistry.start_pool")
        with naming_lock():
            running = self.records()
            name = options.name or free_name(running)
            [record] = self._launch(options, [name], running)
        self._default_if(ServerPool.from_records([record], name), make_default, running)
        return record

    def start_pool(self, options: DaemonOptions, *, make_default: bool | None = None) -> list[ServerRecord]:
        """Start ``options.replicas`` daemons that act as one target, a pool named
        ``options.name`` (made up when None); return their records.

        The replicas are named ``NAME-0``, ``NAME-1``, ... (each an ordinary daemon,
        recorded as a member of pool NAME); as the default target, each new agent
        goes to the least loaded of them (see :mod:`agentnb.rpc.server_pool`).

        Raises:
            DaemonError: as :meth:`start`; if one replica does not start, none is left running.
        """
        options = options.checked()
        with naming_lock():
            running = self.records()
            name = options.name or free_name(running)
            check_free(name, running)
            names = [replica_name(name, i) for i in range(options.replicas)]
            records = self._start_replicas(replace(options, name=name), names, 0, running)
        self._default_if(ServerPool.from_records(records, name, _daemon_starter(name)), make_default, running)
        return records

    def grow_pool(self, name: str, names: Sequence[str], first_index: int, total: int) -> list[ServerRecord]:
        """Start more replicas ``names`` (indices from ``first_index``) of the daemon pool ``name``, with
        the options it was started with (its records keep them); the pool then has ``total`` replicas.

        Raises:
            DaemonError: no such pool, a name in use, or a replica that did not start (none of the
                new ones is left running then).
        """
        with naming_lock():
            running = self.records()
            members = [r for r in running if r.pool == name]
            if not members:
                raise DaemonError(f"no server pool named {name!r} is running (running pools: "
                                  f"{', '.join(sorted(recorded_pools(running))) or 'none'})")
            kept = members[0].extra.get(OPTIONS_KEY)
            if not isinstance(kept, dict):
                raise DaemonError(f"the server pool {name!r} does not record how it was started (an earlier "
                                  "agentnb started it): it cannot grow")
            for replica in names:
                check_free(replica, running)
            records = self._start_replicas(DaemonOptions.from_record(kept), list(names), first_index, running)
            for record in [*members, *records]:
                mark_replica(record.name, name, record.replica, total)
        current = default_pool()
        if current is not None and current.name == name:  # this process's default target grows too
            current.adopt([Replica(r.host, r.port, r.token, r.name) for r in records])
        return records

    def _start_replicas(self, options: DaemonOptions, names: list[str], first_index: int,
                        running: list[ServerRecord]) -> list[ServerRecord]:
        """Start replicas ``names`` of pool ``options.name`` and record them as its members (with the
        options, for :meth:`grow_pool`)."""
        pool_name = options.name or ""
        records = self._launch(options, names, running, pool_name, first_index)
        count, kept = first_index + len(names), {OPTIONS_KEY: options.to_record()}
        return [mark_replica(r.name, pool_name, first_index + i, count, **kept) or r for i, r in enumerate(records)]

    def _launch(self, options: DaemonOptions, names: list[str], running: list[ServerRecord],
                pool_name: str = "", first_index: int = 0) -> list[ServerRecord]:
        """Start the daemons and check that each answers; if one does not, none is left running."""
        if options.launcher == LOCAL:
            records = self._processes.start(options, names, running)
        else:
            records = _launch_on_cluster(options, pool_name, names, first_index)
        errors = run_together([functools.partial(_check_answers, record, "started but does not answer")
                               for record in records])
        failure = next((e for e in errors if e is not None), None)
        if failure is not None:
            self._processes.terminate(stop_launched(records, grace=1.0), grace=1.0)
            raise failure
        return records

    def _default_if(self, target: ServerPool, make_default: bool | None, running: list[ServerRecord]) -> None:
        if make_default or (make_default is None and self._no_live_default(running)):
            self._set_default(target)

    def _no_live_default(self, running: list[ServerRecord]) -> bool:
        """No default server, or only one this registry chose and that is not ``running`` (it has died)."""
        current = default_pool()
        if current is None:
            return True
        return current is self._chosen and not any(_in_pool(r, current) for r in running)

    def _set_default(self, target: ServerPool) -> None:
        # Detached: agents placed on a daemon stay there when their proxies go
        # (a rebound variable, %reset, a kernel restart), ready for get_agent().
        self._chosen = target
        set_default_pool(target, detached=True)

    # -- find and describe ------------------------------------------------------------------

    def records(self, daemons_only: bool = False) -> list[ServerRecord]:
        """The live servers recorded in the runtime directory, oldest first."""
        self._processes.reap()
        return [r for r in iter_records() if not daemons_only or r.kind == DAEMON_KIND]

    def get(self, name: str) -> ServerRecord:
        """The live record ``name``; DaemonError lists the running ones if there is none."""
        record = read_record(check_name(name))
        if record is None:
            names = ", ".join(r.name for r in self.records()) or "none"
            pools = "".join(f"; pool {pool}" for pool in recorded_pools())
            raise DaemonError(f"no agent server named {name!r} is running (running: {names}{pools})")
        return record

    def pool_members(self, name: str) -> list[ServerRecord]:
        """The live replicas of the pool ``name``, in index order (empty if there is no such pool)."""
        return recorded_pools().get(name, [])

    def members(self, name: str) -> list[ServerRecord]:
        """The servers ``name`` stands for: a pool's replicas, or the one server of that name."""
        return self.pool_members(name) or [self.get(name)]

    def default_name(self) -> str | None:
        """The name of the recorded server (or pool) this process places agents on, if any."""
        current = default_pool()
        if current is None:
            return None
        members = [r for r in self.records() if _in_pool(r, current)]
        pools = {r.pool for r in members}
        if len(current) > 1 and len(pools) == 1 and None not in pools:
            return pools.pop()
        return members[0].name if members else None

    def statuses(self) -> list[ServerStatus]:
        """Every live recorded server with the info it gives now (unreachable ones say why)."""
        default = default_pool()
        # At once: an unreachable server takes INFO_TIMEOUT to say so, and must not hold up the others.
        return gather([functools.partial(self._status, record, default) for record in self.records()])

    def status(self, name: str) -> ServerStatus:
        """One server's status, with the agents it hosts."""
        status = self._status(self.get(name), default_pool())
        if status.reachable:
            with contextlib.suppress(AgentServerError, TimeoutError):
                conn = ServerConnection.get(status.record.host, status.record.port, status.record.token)
                status.agents = conn.list_agents(timeout=INFO_TIMEOUT)
        return status

    @staticmethod
    def _status(record: ServerRecord, default: ServerPool | None) -> ServerStatus:
        is_default = default is not None and _in_pool(record, default)
        try:
            info = _info(record)
        except VersionMismatch as exc:
            return ServerStatus(record, None, str(exc), is_default, version=exc.server_version)
        except (AgentServerError, TimeoutError) as exc:
            ended = engine_state(record)  # e.g. "slurm job 12 ended: TIMEOUT": the reason, not a hang
            return ServerStatus(record, None, f"{ended}; {exc}" if ended else str(exc), is_default, ended=ended)
        return ServerStatus(record, info, "", is_default, version=info.version)

    def log_tail(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines of a daemon's log (also of one that has stopped)."""
        return log_tail(name, lines)

    # -- choose ------------------------------------------------------------------------------

    def use(self, name: str | None) -> list[ServerRecord]:
        """Place this process's later ``to_dist()`` objects on daemon or pool ``name``
        (None: back to child servers). Returns its records (a pool's replicas)."""
        if name is None:
            clear_default_server()
            return []
        records = self.members(name)
        # A pool's replicas at once.
        gather([functools.partial(_check_answers, record, "is recorded but does not answer") for record in records])
        self._set_default(_daemon_pool(records, name))
        return records

    # -- stop --------------------------------------------------------------------------------

    def stop(self, names: Sequence[str], grace: float = DEFAULT_STOP_GRACE) -> list[str]:
        """Stop the named servers: SIGTERM, then SIGKILL after ``grace`` seconds.

        A pool's name stops all its replicas. Returns the names of the servers
        stopped. Raises DaemonError (before stopping any) if a name is not running.
        """
        records = {r.name: r for name in dict.fromkeys(names) for r in self.members(name)}
        return self._terminate(list(records.values()), grace)

    def stop_all(self, grace: float = DEFAULT_STOP_GRACE) -> list[str]:
        """Stop every daemon of this user (servers started otherwise are left alone)."""
        return self._terminate(self.records(daemons_only=True), grace)

    def _terminate(self, records: list[ServerRecord], grace: float) -> list[str]:
        if grace < 0:
            raise DaemonError(f"--grace must be 0 or more seconds, got {grace}")
        for record in records:
            self._forget(record)
        try:
            local = stop_launched(records, grace)
            self._processes.terminate(local, grace)
            return [record.name for record in records]
        finally:
            self._drop_dead_default(records)

    @staticmethod
    def _forget(record: ServerRecord) -> None:
        """This process stops talking to ``record``'s server (a pool skips a replica it cannot reach)."""
        current = default_pool()
        if current is not None and len(current) == 1 and _in_pool(record, current):
            clear_default_server()
        ServerConnection.close_to(record.host, record.port, f"agent server {record.name!r} at {record.address} "
                                  "was stopped (by stop_server or %agent_server stop)")

    def _drop_dead_default(self, stopped: list[ServerRecord]) -> None:
        """Back to child servers once every replica of the default pool is stopped."""
        current = default_pool()
        if (current is not None and any(_in_pool(r, current) for r in stopped)
                and not any(_in_pool(r, current) for r in self.records())):
            clear_default_server()


# -- the module's functions: one registry for the process -------------------------------------

_registry: DaemonRegistry | None = None


def registry() -> DaemonRegistry:
    """This process's daemon registry (the one the functions below and ``%agent_server`` use)."""
    global _registry
    if _registry is None:
        _registry = DaemonRegistry()
    return _registry


def start_server(name: str | None = None, *, replicas: int = 1, capacity: int = 32, host: str = "localhost",
                 port: int = 0, pool_type: str = "local", redis_url: str | None = None,
                 max_expire_time: float | None = None, max_len: int | None = None,
                 model_config_path: str | None = None, use: bool | None = None,
                 log_level: str = "INFO", launcher: str = LOCAL,
                 launcher_options: Mapping[str, Any] | None = None) -> ServerPool:
    """Start a daemon (or, with ``replicas`` > 1, a pool of daemons) that outlives this process.

    The same as ``%agent_server start``: the servers run in their own session,
    log to a file in the runtime directory and are found again by name (also
    from a restarted kernel or another script) with :func:`find_server`.

    Args:
        name: its name (a pool's replicas are ``NAME-0`` ...); made up when None.
        replicas: how many servers act as one target.
        capacity: agent calls each server runs at once.
        host, port: a loopback address; port 0 picks a free one.
        pool_type, redis_url, max_expire_time, max_len: where results are kept, and how long.
        model_config_path: a JSON file of model configurations for the servers.
        use: place this process's later ``to_dist()`` objects on it; None (the
            default) does so when no default server is set yet.
        log_level: what its log file (:func:`server_logs`) records: ``INFO`` has its
            start and stop, clients, agents created and deleted, and every failed or
            cancelled call; ``DEBUG`` adds every successful call with its duration;
            ``WARNING`` or ``ERROR`` keep only problems.
        launcher: what starts the servers: ``local`` (this machine), ``slurm`` (one Slurm
            job) or ``ray`` (Ray actors, detached); a cluster launcher's servers are a pool, also
            of one replica. See :func:`start_pool`.
        launcher_options: the launcher's options (see :func:`start_pool`).

    Returns:
        The server (a pool of one) or pool, usable as ``to_dist=``; a pool grows with
        :meth:`ServerPool.scale` (its new replicas are daemons started with the same options).

    Raises:
        DaemonError: a wrong option, a name in use, or a server that did not start
            (the message has the end of its log).
    """
    options = DaemonOptions(name=name, host=host, port=port, capacity=capacity, pool_type=pool_type,
                            redis_url=redis_url, max_expire_time=max_expire_time, max_len=max_len,
                            model_config_path=model_config_path, replicas=replicas, log_level=log_level,
                            launcher=launcher, launcher_options=dict(launcher_options or {}))
    if replicas > 1 or launcher != LOCAL:
        records = registry().start_pool(options, make_default=use)
        pool_name = records[0].pool or ""
        return ServerPool.from_records(records, pool_name, _daemon_starter(pool_name))
    record = registry().start(options, make_default=use)
    return ServerPool.from_records([record], record.name)


def find_server(name: str) -> ServerPool:
    """The running daemon or pool called ``name`` (a pool's name stands for all its replicas).

    Raises:
        DaemonError: nothing of that name runs (the message lists what does).
    """
    return _daemon_pool(registry().members(name), name)


def scale_server(name: str, replicas: int) -> list[Replica]:
    """Grow daemon pool ``name`` to ``replicas`` servers (``%agent_server scale``); return the new ones.

    The new daemons are started as the pool's first ones were (the same launcher and
    options, kept in its records), so a restarted kernel can grow a pool it did not
    start. If this process places its agents on the pool, its next agents go to the
    new, empty replicas first.

    Raises:
        DaemonError: no pool called ``name`` runs (a lone daemon is not a pool).
        ValueError: ``replicas`` is below the pool's size (a pool does not shrink).
        AgentServerError: a new server did not start (none of the new ones is left running).
    """
    members = registry().members(name)
    if members[0].pool != name:
        raise DaemonError(f"{name!r} is a lone daemon, not a pool, and cannot grow; start a pool with "
                          f"start_server(NAME, replicas=N) or `%agent_server start --name NAME --replicas N`")
    added = _daemon_pool(members, name).scale(replicas)
    default = default_pool()
    if default is not None and default.name == name:
        default.adopt(added)  # daemons: stopped by name, not by this pool object
    return added


def _daemon_pool(members: list[ServerRecord], name: str) -> ServerPool:
    """The daemons ``members`` called ``name`` as a target; a pool's can grow (:meth:`ServerPool.scale`)."""
    return ServerPool.from_records(members, name, _daemon_starter(name) if members[0].pool == name else None)


def _daemon_starter(pool_name: str) -> ReplicaStarter:
    """How a daemon pool grows (:meth:`ServerPool.scale`): with the options its records keep."""

    def start(names: Sequence[str], first_index: int, total: int) -> tuple[list[Replica], list[StartedServer]]:
        records = registry().grow_pool(pool_name, names, first_index, total)
        return [Replica(r.host, r.port, r.token, r.name) for r in records], []  # daemons: stopped by name

    return start


def list_servers() -> list[ServerStatus]:
    """Every server of yours recorded on this machine, with its live figures (``%agent_server list``)."""
    return registry().statuses()


def _status_of(name: str) -> ServerStatus:
    return registry().status(name)


def describe_server(name: str) -> list[ServerStatus]:
    """The server ``name`` (or each replica of pool ``name``) with its figures and agents."""
    members = registry().members(name)
    return gather([functools.partial(_status_of, record.name) for record in members])


def server_logs(name: str, lines: int = 50) -> str:
    """The end of the log of server ``name`` (of each replica, under a header, for a pool)."""
    replicas = registry().pool_members(name)
    if not replicas:
        return registry().log_tail(name, lines)
    return "".join(f"==> {record.name} <==\n{registry().log_tail(record.name, lines)}" for record in replicas)


def server_calls(name: str, limit: int = 10_000) -> list[CallRecord]:
    """The recent calls of server ``name`` (of every replica of pool ``name``), oldest first.

    A server keeps the calls queued or running on it and the last 10,000 that
    ended. ``agentnb.timeline(agentnb.server_calls("lab"))`` draws them
    (``%agent_server timeline lab`` in a notebook).

    Args:
        name: a recorded server or pool.
        limit: the most recent this many calls of each server; 0 for all it keeps.
    Raises:
        DaemonError: nothing of that name runs.
        AgentServerError: a server did not answer.
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 (all) or more, got {limit}")

    def calls_of(record: ServerRecord) -> list[CallRecord]:
        listing = ServerConnection.get(record.host, record.port, record.token).calls(limit, timeout=INFO_TIMEOUT)
        return [CallRecord(c.agent_name or c.agent_id, c.method, c.state, c.queued, c.started or None,
                           c.ended or None, c.error_type, c.task_id, c.agent_id, record.name)
                for c in listing.calls]

    members = registry().members(name)
    lists = gather([functools.partial(calls_of, record) for record in members])
    return sorted((call for calls in lists for call in calls), key=lambda call: call.queued)


def use_server(name: str | None) -> ServerPool | None:
    """Place this process's later ``to_dist()`` objects on daemon or pool ``name``
    (None: back to child servers of this process); return it."""
    records = registry().use(name)
    return ServerPool.from_records(records, name) if name is not None else None


def default_server_name() -> str | None:
    """The name of the daemon or pool this process places its new agents on, if any."""
    return registry().default_name()


def stop_server(*names: str, all: bool = False, grace: float = DEFAULT_STOP_GRACE) -> list[str]:  # noqa: A002
    """Stop the named daemons or pools (or, with ``all=True``, every daemon of yours).

    Running calls get ``grace`` seconds, then the servers are killed. Returns
    the names of the servers stopped.

    Raises:
        DaemonError: a name is not running (nothing is stopped then).
    """
    if all:
        return registry().stop_all(grace)
    return registry().stop(names, grace)


def start_pool(replicas: int | None = None, *, capacity: int = 32, name: str | None = None,
               host: str = "localhost", token: str | None = None, pool_type: str = "local",
               redis_url: str | None = None, max_len: int | None = None, max_expire_time: float | None = None,
               local_mode: bool = True, agent_dir: str | None = None, model_config_path: str | None = None,
               custom_agent_classes: Sequence[type] = (), launcher: str = LOCAL,
               launcher_options: Mapping[str, Any] | None = None) -> ServerPool:
    """Start ``replicas`` agent servers that act as one target; return their pool.

    The servers are subprocesses of this process: they end when it does, or
    at :meth:`ServerPool.stop` (or at the end of ``with start_pool(...) as
    pool:``). They are recorded in the runtime directory as ``NAME-0`` ...
    :meth:`ServerPool.scale` adds more, started the same way.

    Args:
        replicas: how many servers; default ``os.cpu_count()``.
        capacity: agent calls each server runs at once.
        name: the pool's name (default ``pool-`` and a random suffix).
        host: the interface every replica binds (loopback unless ``local_mode=False``).
        token: the token of every replica (made up when not given; see ``pool.replicas``).
        pool_type, redis_url, max_len, max_expire_time: where results are kept, and how long.
        local_mode: refuse a host beyond loopback unless False.
        agent_dir: import every module of this folder in each server.
        model_config_path: a JSON file of model configurations.
        custom_agent_classes: importable classes the servers import at start.
        launcher: what starts the servers: ``local`` (subprocesses of this one) or
            ``slurm`` (the steps of one Slurm job, each bound to its node's name;
            ``host`` and ``local_mode`` do not apply). The pool's end, or this
            process's, cancels the job. ``list_servers()`` shows where each runs.
            ``ray``: each server in a Ray actor on its node (see ``launcher_options``).
        launcher_options: the launcher's options; for ``slurm``: ``partition``,
            ``time``, ``cpus_per_server``, ``mem_per_server``, ``sbatch_lines`` and
            ``start_timeout`` (see :class:`agentnb.launch.slurm.SlurmLauncher`); for ``ray``
            (Ray actors on a Ray cluster's nodes): ``address``, ``servers_per_node``,
            ``cpus_per_server`` and ``start_timeout`` (see :class:`agentnb.launch.ray_launcher.RayLauncher`).

    Raises:
        ValueError: an unknown launcher or launcher option (the message names the supported ones).
        AgentServerError: a replica did not start (the others are stopped); the
            message says which and why (for Slurm: a job Slurm ended, with its state).
    """
    check_launcher(launcher, launcher_options)
    count = (os.cpu_count() or 1) if replicas is None else int(replicas)
    if count < 1:
        raise ValueError(f"a server pool needs at least 1 replica, got {replicas}")
    name = name or f"pool-{secrets.token_hex(3)}"
    token = token or secrets.token_urlsafe(32)
    if launcher != LOCAL:
        modules = [cls.__module__ for cls in custom_agent_classes if cls.__module__ != "__main__"]

        def args_for(replica: str) -> list[str]:
            return server_argv(name=replica, capacity=capacity, pool_type=pool_type, redis_url=redis_url,
                               max_len=max_len, max_expire_time=max_expire_time, agent_dir=agent_dir,
                               agent_modules=modules, model_config_path=model_config_path, log_level="WARNING")

        def start(names: Sequence[str], first_index: int) -> tuple[list[Replica], list[StartedServer]]:
            launched = cluster_launcher(launcher, launcher_options).start(
                name, names, ServerSpec(args_for, token, server_environment()), first_index)
            return [Replica(r.host, r.port, token, r.name) for r in launched.records], [launched]
    else:
        def start(names: Sequence[str], first_index: int) -> tuple[list[Replica], list[StartedServer]]:
            servers = _start_children(name, names, first_index, token, host=host, agent_classes=custom_agent_classes,
                                      extra_env=server_environment(), capacity=capacity, pool_type=pool_type,
                                      redis_url=redis_url, max_len=max_len, max_expire_time=max_expire_time,
                                      agent_dir=agent_dir, model_config_path=model_config_path,
                                      local_mode=local_mode)
            return [Replica(host, s.port, token, s.name) for s in servers], list(servers)

    starter = _PoolStarter(name, start)
    first, started = starter([replica_name(name, i) for i in range(count)], 0, count)
    return ServerPool(first, name, started, starter)


StartReplicas = Callable[[Sequence[str], int], tuple[list[Replica], list[StartedServer]]]


@dataclass
class _PoolStarter:
    """How :func:`start_pool` starts its servers: the first ones, and those :meth:`ServerPool.scale` adds."""

    pool_name: str
    start: StartReplicas  # (names, first index) -> the replicas, and what stops them

    def __call__(self, names: Sequence[str], first_index: int, total: int) -> tuple[list[Replica], list[StartedServer]]:
        taken = [n for n in names if read_record(n) is not None]
        if taken:
            raise AgentServerError(f"agent server(s) named {', '.join(taken)} already run: choose another pool name")
        replicas, started = self.start(names, first_index)
        for i, name in enumerate(names):
            mark_replica(name, self.pool_name, first_index + i, total)
        for record in recorded_pools().get(self.pool_name, []):  # the earlier replicas: the pool's new size
            if record.name not in names:
                mark_replica(record.name, self.pool_name, record.replica, total)
        return replicas, started


def _start_children(pool_name: str, names: Sequence[str], first_index: int, token: str,
                    **options: Any) -> list[ServerProcess]:
    """Child servers ``names`` of this process, started at once; if one fails, none is left running."""
    started: list[ServerProcess | None] = [None] * len(names)

    def launch(i: int) -> None:
        # This process's model configurations (agentnb.init) reach the servers through their environment.
        started[i] = start_server_process(token, name=names[i], **options)

    errors = run_together([functools.partial(launch, i) for i in range(len(names))])
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    if failed:
        run_together([server.shutdown for server in started if server is not None], ignore=(Exception,))
        index, error = failed[0]
        raise AgentServerError(f"replica {first_index + index} of the server pool {pool_name!r} did not start: "
                               f"{error}") from error
    return [server for server in started if server is not None]


def _launch_on_cluster(options: DaemonOptions, pool_name: str, names: list[str],
                       first_index: int = 0) -> list[ServerRecord]:
    """Start daemons ``names`` (pool ``pool_name``) with ``options.launcher``; DaemonError if they do not start."""
    spec = ServerSpec(lambda name: options.server_args(name, str(log_path_for(name))), secrets.token_urlsafe(32),
                      server_environment(), DAEMON_KIND)
    try:
        launcher = cluster_launcher(options.launcher, options.launcher_options)
        return launcher.start(pool_name, names, spec, first_index).records
    except AgentServerError as exc:
        raise DaemonError(f"the {options.launcher} launcher did not start pool {pool_name!r}: {exc}") from None
