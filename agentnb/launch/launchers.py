"""Launchers: what starts the agent servers of a pool, and where they run.

- ``local`` (the default): processes of this machine, children of this process
  (:func:`agentnb.start_pool`) or daemons (:func:`agentnb.start_server`), as
  :mod:`agentnb.launch.command` and :mod:`agentnb.launch.daemons` start them;
- ``slurm``: one Slurm job whose steps are the servers (:mod:`agentnb.launch.slurm`);
- ``ray``: Ray actors on the nodes of a Ray cluster, each holding a server (:mod:`agentnb.launch.ray_launcher`).

A cluster launcher starts N servers as ``python -m agentnb.server`` (the one argv
builder, :func:`agentnb.launch.command.server_argv`) with the pool's token passed
privately, learns their addresses from the records they write in the runtime
directory (which the cluster's nodes share with this machine, as a home directory
is), and returns them as :class:`LaunchedServers`: their records, which say where
each runs (``node``, and the launcher's handle, e.g. ``job 12``), and how to stop
them all. The records carry enough for another process (a restarted kernel,
``%agent_server stop``) to stop them too: :func:`stop_launched`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentnb.launch.launched import ClusterLauncher, LaunchedServers, ServerSpec
from agentnb.runtime_dir import ServerRecord

LOCAL = "local"
LAUNCHERS = (LOCAL, "slurm", "ray")
__all__ = ["LAUNCHERS", "LOCAL", "ClusterLauncher", "LaunchedServers", "ServerSpec", "check_launcher",
           "cluster_launcher", "engine_state", "stop_launched"]


def check_launcher(launcher: str, options: Mapping[str, Any] | None) -> None:
    """ValueError naming the supported launchers, or the options ``launcher`` takes, when either is wrong."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if launcher == LOCAL and options:
        raise ValueError(f"the local launcher takes no options, got {', '.join(sorted(options))}")
    if launcher != LOCAL:
        cluster_launcher(launcher, options)


def cluster_launcher(launcher: str, options: Mapping[str, Any] | None = None) -> ClusterLauncher:
    """The launcher called ``launcher`` with ``options`` (checked: ValueError names the wrong ones)."""
    if launcher == "slurm":
        from agentnb.launch.slurm import SlurmLauncher

        return SlurmLauncher.from_options(options or {})
    if launcher == "ray":
        from agentnb.launch.ray_launcher import RayLauncher

        return RayLauncher.from_options(options or {})
    raise ValueError(f"unknown cluster launcher {launcher!r}: use one of {', '.join(LAUNCHERS[1:])}")


def stop_launched(records: Sequence[ServerRecord], grace: float) -> list[ServerRecord]:
    """Stop the servers of ``records`` that a cluster launcher started (through that engine);
    return the others, for the caller to stop as local processes."""
    by_launcher: dict[str, list[ServerRecord]] = {}
    rest = []
    for record in records:
        if record.launcher == LOCAL:
            rest.append(record)
        else:
            by_launcher.setdefault(record.launcher, []).append(record)
    for launcher, members in by_launcher.items():
        if launcher == "slurm":
            from agentnb.launch.slurm import stop_recorded

            stop_recorded(members, grace)
        elif launcher == "ray":
            from agentnb.launch import ray_launcher

            ray_launcher.stop_recorded(members, grace)
        else:  # a launcher of a later version: its servers are still processes that answer Shutdown
            rest.extend(members)
    return rest


def engine_state(record: ServerRecord) -> str:
    """What the engine that started ``record``'s server says of it when it has ended it
    (``slurm job 12 ended: TIMEOUT``, ``ray node 10.0.0.2 died``); empty for a local server
    or one still running."""
    try:
        if record.launcher == "slurm":
            from agentnb.launch.slurm import job_state

            return job_state(record)
        if record.launcher == "ray":
            from agentnb.launch.ray_launcher import replica_state

            return replica_state(record)
    except Exception:  # noqa: BLE001 (the engine may be unreachable or missing here: nothing more to say)
        return ""
    return ""
