"""``%agent_server``: the notebook's handle on agent-server daemons."""

from __future__ import annotations

import argparse

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

import agentnb
from kernel_ext.daemon_views import DaemonDetail, DaemonTable
from kernel_ext.magic_args import HelpShown, MagicUsageError, parse


@magics_class
class AgentServerMagics(Magics):
    """The ``%agent_server`` line magic: a view over :mod:`agentnb.cluster`'s public functions
    (``agentnb.start_server``, ``list_servers``, ``describe_server``, ``server_logs``,
    ``use_server``, ``stop_server``, ``server_calls`` and ``timeline``), which a script can call as well."""

    @line_magic
    def agent_server(self, line: str) -> None:
        """Manage agent-server daemons: start, scale, list, status, logs, stop, use, timeline.

        ``%agent_server --help`` describes every command and flag.
        """
        try:
            args = parse(line)
        except HelpShown:
            return
        except MagicUsageError as exc:
            raise UsageError(str(exc)) from None
        getattr(self, f"_{args.command}")(args)

    def _start(self, args: argparse.Namespace) -> None:
        server = agentnb.start_server(
            args.name, replicas=args.replicas, host=args.host, port=args.port, capacity=args.capacity,
            pool_type=args.pool_type, redis_url=args.redis_url, max_expire_time=args.max_expire_time,
            max_len=args.max_len, model_config_path=args.model_config_path,
            use=False if args.no_default else None, log_level=args.log_level, launcher=args.launcher,
            launcher_options=args.launcher_options,
        )
        statuses = agentnb.describe_server(server.name)
        records = [status.record for status in statuses]
        if len(records) > 1:
            print(f"Server pool {server.name!r} of {len(records)} replicas running (capacity {records[0].capacity} "
                  f"each); {self._placement(server.name, 'them, each to the least loaded replica')}.")
            for record in records:
                where = f"on {record.where}, " if record.launcher != "local" else ""
                print(f"  {record.name} at {record.address} ({where}pid {record.pid}), log: {record.log_path}")
            return
        record = records[0]
        print(f"Agent server {record.name!r} running at {record.address} (pid {record.pid}, "
              f"capacity {record.capacity}); {self._placement(record.name, 'it')}.\nLog: {record.log_path}")

    @staticmethod
    def _placement(name: str, target: str) -> str:
        """Where this kernel's agents go now that ``name`` started."""
        default = agentnb.default_server_name()
        if default == name:
            return f"agents distributed from this kernel now go to {target}"
        if default is not None:
            return f"the default stays {default!r}; `%agent_server use {name}` switches"
        return f"`%agent_server use {name}` places this kernel's agents on it"

    def _scale(self, args: argparse.Namespace) -> None:
        try:
            added = agentnb.scale_server(args.name, args.replicas)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not added:
            print(f"Pool {args.name!r} already has {args.replicas} replicas.")
            return
        records = {status.record.name: status.record for status in agentnb.describe_server(args.name)}
        if agentnb.default_server_name() == args.name:
            next_agents = "this kernel's next agents go to the new ones first"
        else:
            next_agents = f"`%agent_server use {args.name}` places this kernel's agents on it"
        print(f"Pool {args.name!r} grew to {args.replicas} replicas; {next_agents}:")
        for replica in added:
            record = records.get(replica.name or "")
            where = f"on {record.where}, " if record is not None and record.launcher != "local" else ""
            pid = f"pid {record.pid}" if record is not None else "starting"
            print(f"  {replica.name} at {replica.address} ({where}{pid})")

    def _list(self, args: argparse.Namespace) -> None:
        display(DaemonTable(agentnb.list_servers()))

    def _status(self, args: argparse.Namespace) -> None:
        for status in agentnb.describe_server(args.name):
            display(DaemonDetail(status))

    def _logs(self, args: argparse.Namespace) -> None:
        print(agentnb.server_logs(args.name, args.lines), end="")

    def _stop(self, args: argparse.Namespace) -> None:
        default = agentnb.default_server_name()
        stopped = agentnb.stop_server(*args.names, all=args.all, grace=args.grace)
        if not stopped:
            print("No daemon was running.")
            return
        print(f"Stopped {', '.join(map(repr, stopped))}.")
        if default is not None and agentnb.default_server_name() is None:
            print("Agents distributed from this kernel now go to a child server of this kernel "
                  "(`%agent_server use NAME` picks another daemon).")

    def _timeline(self, args: argparse.Namespace) -> None:
        agentnb.timeline(agentnb.server_calls(args.name, limit=args.limit))

    def _use(self, args: argparse.Namespace) -> None:
        server = agentnb.use_server(None if args.none else args.name)
        if server is None:
            print("Agents distributed from this kernel now go to child servers of this kernel.")
        elif len(server) == 1:
            replica = server.replicas[0]
            print(f"Agents distributed from this kernel now go to the {replica.display}.")
        else:
            print(f"Agents distributed from this kernel now go to pool {args.name!r}, each to the least loaded "
                  f"of {', '.join(r.name for r in server.replicas)}.")
