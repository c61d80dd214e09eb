"""``%agent_server``: the notebook's handle on agent-server daemons."""

from __future__ import annotations

import argparse

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from agentnb.rpc.server_pool import gather, pool_of
from kernel_ext.daemon_options import DaemonOptions
from kernel_ext.daemon_views import DaemonDetail, DaemonTable
from kernel_ext.daemons import DaemonRegistry
from kernel_ext.magic_args import HelpShown, MagicUsageError, parse


@magics_class
class AgentServerMagics(Magics):
    """The ``%agent_server`` line magic; the work is done by a :class:`DaemonRegistry`."""

    def __init__(self, shell: object, registry: DaemonRegistry) -> None:
        super().__init__(shell)
        self.registry = registry

    @line_magic
    def agent_server(self, line: str) -> None:
        """Manage agent-server daemons: start, list, status, logs, stop, use.

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
        options = DaemonOptions(
            name=args.name, host=args.host, port=args.port, capacity=args.capacity, pool_type=args.pool_type,
            redis_url=args.redis_url, max_expire_time=args.max_expire_time, max_len=args.max_len,
            model_config_path=args.model_config_path, replicas=args.replicas,
        )
        make_default = False if args.no_default else None
        if options.replicas > 1:
            records = self.registry.start_pool(options, make_default=make_default)
            name = pool_of(records[0]) or records[0].name
            print(f"Server pool {name!r} of {len(records)} replicas running (capacity {records[0].capacity} each); "
                  f"{self._placement(name, 'them, each to the least loaded replica')}.")
            for record in records:
                print(f"  {record.name} at {record.address} (pid {record.pid}), log: {record.log_path}")
            return
        record = self.registry.start(options, make_default=make_default)
        print(f"Agent server {record.name!r} running at {record.address} (pid {record.pid}, "
              f"capacity {record.capacity}); {self._placement(record.name, 'it')}.\nLog: {record.log_path}")

    def _placement(self, name: str, target: str) -> str:
        """Where this kernel's agents go now that ``name`` started."""
        default = self.registry.default_name()
        if default == name:
            return f"agents distributed from this kernel now go to {target}"
        if default is not None:
            return f"the default stays {default!r}; `%agent_server use {name}` switches"
        return f"`%agent_server use {name}` places this kernel's agents on it"

    def _list(self, args: argparse.Namespace) -> None:
        display(DaemonTable(self.registry.statuses()))

    def _status(self, args: argparse.Namespace) -> None:
        records = self.registry.members(args.name)  # a pool: each replica, asked at once
        for status in gather([lambda name=record.name: self.registry.status(name) for record in records]):
            display(DaemonDetail(status))

    def _logs(self, args: argparse.Namespace) -> None:
        replicas = self.registry.pool_members(args.name)
        if not replicas:
            print(self.registry.log_tail(args.name, args.lines), end="")
        for record in replicas:
            print(f"==> {record.name} <==")
            print(self.registry.log_tail(record.name, args.lines), end="")

    def _stop(self, args: argparse.Namespace) -> None:
        default = self.registry.default_name()
        if args.all:
            stopped = self.registry.stop_all(args.grace)
        else:
            stopped = self.registry.stop(args.names, args.grace)
        if not stopped:
            print("No daemon was running.")
            return
        print(f"Stopped {', '.join(map(repr, stopped))}.")
        if default is not None and self.registry.default_name() is None:
            print("Agents distributed from this kernel now go to a child server of this kernel "
                  "(`%agent_server use NAME` picks another daemon).")

    def _use(self, args: argparse.Namespace) -> None:
        records = self.registry.use(None if args.none else args.name)
        if not records:
            print("Agents distributed from this kernel now go to child servers of this kernel.")
        elif len(records) == 1:
            print(f"Agents distributed from this kernel now go to {records[0].name!r} at {records[0].address}.")
        else:
            print(f"Agents distributed from this kernel now go to pool {args.name!r}, each to the least loaded "
                  f"of {', '.join(r.name for r in records)}.")
