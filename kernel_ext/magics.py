"""``%agent_server``: the notebook's handle on agent-server daemons."""

from __future__ import annotations

import argparse

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

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
            model_config_path=args.model_config_path,
        )
        record = self.registry.start(options, make_default=False if args.no_default else None)
        default = self.registry.default_name()
        if default == record.name:
            placement = "agents distributed from this kernel now go to it"
        elif default is not None:
            placement = f"the default stays {default!r}; `%agent_server use {record.name}` switches"
        else:
            placement = f"`%agent_server use {record.name}` places this kernel's agents on it"
        print(f"Agent server {record.name!r} running at {record.address} (pid {record.pid}, "
              f"capacity {record.capacity}); {placement}.\nLog: {record.log_path}")

    def _list(self, args: argparse.Namespace) -> None:
        display(DaemonTable(self.registry.statuses()))

    def _status(self, args: argparse.Namespace) -> None:
        display(DaemonDetail(self.registry.status(args.name)))

    def _logs(self, args: argparse.Namespace) -> None:
        print(self.registry.log_tail(args.name, args.lines), end="")

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
        if default in stopped:
            print("Agents distributed from this kernel now go to a child server of this kernel "
                  "(`%agent_server use NAME` picks another daemon).")

    def _use(self, args: argparse.Namespace) -> None:
        record = self.registry.use(None if args.none else args.name)
        if record is None:
            print("Agents distributed from this kernel now go to child servers of this kernel.")
        else:
            print(f"Agents distributed from this kernel now go to {record.name!r} at {record.address}.")
