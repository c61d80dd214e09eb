"""The command line of ``%agent_server``: subcommands, flags, and errors that name what was wrong."""

from __future__ import annotations

import argparse
import shlex
from typing import NoReturn

from agentnb import DaemonOptions

PROG = "%agent_server"
COMMANDS = ("start", "scale", "list", "status", "logs", "stop", "use", "timeline")

DESCRIPTION = """\
Manage agent-server daemons: servers that run apart from this kernel (they
survive its restart and shutdown) and host the agents made with .to_dist().
The first daemon started in a kernel becomes its default: later .to_dist()
and to_dist=True objects go there instead of to a child process.
With --replicas N, N daemons (NAME-0 ... NAME-{N-1}) act as one pool called
NAME: each new agent goes to the least loaded replica, so CPU-bound agents
use several cores; NAME stands for all of them in use, status, logs and stop.
"""

EPILOG = """\
examples:
  %agent_server start --name lab --capacity 8
  %agent_server start --name dbg --log-level DEBUG
  %agent_server start --name farm --replicas 4
  %agent_server start --name farm --replicas 2 --launcher slurm --partition debug --time 60
  %agent_server start --name farm --replicas 4 --launcher ray --address auto --servers-per-node 2
  %agent_server scale farm 8
  %agent_server list
  %agent_server status lab
  %agent_server logs lab -n 20
  %agent_server timeline lab
  %agent_server use lab
  %agent_server stop lab
  %agent_server stop --all

`%agent_server COMMAND --help` describes one command.
"""


class MagicUsageError(Exception):
    """A wrong ``%agent_server`` command line; the message says what was wrong."""


class HelpShown(Exception):
    """``--help`` printed the help: there is nothing more to do."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise MagicUsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise MagicUsageError(message or f"{self.prog}: error")
        raise HelpShown()


number_type = DaemonOptions.number_type
_port = number_type(int, 0, "a port number (0 for a free one)")
_positive_int = number_type(int, 1, "a whole number of at least 1")
_lines = number_type(int, 0, "a number of lines (0 or more)")
_seconds = number_type(float, 0.0, "a number of seconds (0 or more)")
_positive_seconds = number_type(float, 1e-9, "a positive number of seconds")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``%agent_server`` and its subcommands."""
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, add_help=True,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=_Parser)

    start = commands.add_parser("start", help="start a daemon and wait until it answers",
                                description="Start an agent-server daemon and wait until it answers.")
    start.add_argument("--name", help="its name (default: daemon-1, daemon-2, ...)")
    start.add_argument("--host", default="localhost",
                       help="loopback interface to bind: localhost (default), 127.0.0.1 or ::1")
    start.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    start.add_argument("--capacity", type=_positive_int, default=32,
                       help="calls run at once, per replica (default: 32)")
    start.add_argument("--replicas", type=_positive_int, default=1,
                       help="server processes acting as one pool (default: 1); agents go to the least loaded")
    start.add_argument("--pool-type", choices=DaemonOptions.POOL_TYPES, default="local",
                       help="where results are kept: local or redis (default: local)")
    start.add_argument("--redis-url", help="Redis URL, with --pool-type redis")
    start.add_argument("--max-expire-time", type=_positive_seconds, help="seconds results are kept")
    start.add_argument("--max-len", type=_positive_int, help="results kept at most (local pool)")
    start.add_argument("--model-config-path", help="JSON file of model configurations")
    start.add_argument("--log-level", type=str.upper, choices=DaemonOptions.LOG_LEVELS, default="INFO",
                       help="what its log records: INFO (default) has its start and stop, clients, agents "
                            "created and deleted, failed and cancelled calls; DEBUG adds every call; "
                            "WARNING or ERROR only problems")
    DaemonOptions.add_launcher_arguments(start)
    start.add_argument("--no-default", action="store_true",
                       help="do not make it this kernel's default even if there is none yet")

    scale = commands.add_parser("scale", help="grow a pool: start more replicas as its first ones were",
                                description="Grow pool NAME to REPLICAS servers, started with the options (and "
                                            "launcher) it was started with; its next agents go to the new ones. "
                                            "A pool does not shrink: stop a replica by its name.")
    scale.add_argument("name", help="the pool's name")
    scale.add_argument("replicas", type=_positive_int, help="the number of servers it should have")

    commands.add_parser("list", help="every daemon of this user, with its load",
                        description="List every agent server recorded for this user.")

    status = commands.add_parser("status", help="one daemon and its agents",
                                 description="Show one agent server and the agents it hosts.")
    status.add_argument("name", help="the daemon's (or pool's) name")

    logs = commands.add_parser("logs", help="the end of a daemon's log file",
                               description="Print the end of a daemon's log file.")
    logs.add_argument("name", help="the daemon's (or pool's) name")
    logs.add_argument("-n", "--lines", type=_lines, default=50, help="lines to show (default: 50)")

    stop = commands.add_parser("stop", help="stop daemons (SIGTERM, then SIGKILL after --grace)",
                               description="Stop daemons: SIGTERM lets running calls finish; "
                                           "SIGKILL follows after --grace seconds.")
    stop.add_argument("names", nargs="*", metavar="NAME", help="the daemons (or pools) to stop")
    stop.add_argument("--all", action="store_true", help="stop every daemon of this user")
    stop.add_argument("--grace", type=_seconds, default=DaemonOptions.DEFAULT_STOP_GRACE,
                      help=f"seconds before SIGKILL (default: {DaemonOptions.DEFAULT_STOP_GRACE:g})")

    use = commands.add_parser("use", help="place this kernel's new agents on a daemon",
                              description="Place the agents this kernel distributes from now on "
                                          "on daemon NAME (--none: back to child servers).")
    use.add_argument("name", nargs="?", help="the daemon's (or pool's) name")
    use.add_argument("--none", action="store_true", help="go back to child servers of this kernel")

    timeline = commands.add_parser("timeline", help="a picture of a daemon's recent calls, by agent",
                                   description="Draw the recent calls of a daemon (or pool): one row per agent, "
                                               "a bar per call from queued through running to its end.")
    timeline.add_argument("name", help="the daemon's (or pool's) name")
    timeline.add_argument("-n", "--limit", type=_lines, default=10_000,
                          help="the most recent calls of each server to draw (default: 10000; 0: all kept)")
    return parser


def parse(line: str) -> argparse.Namespace:
    """Parse a ``%agent_server`` line.

    Raises:
        MagicUsageError: the line is wrong (the message names the argument).
        HelpShown: help was asked for (and printed), or no command was given.
    """
    parser = build_parser()
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise MagicUsageError(f"{PROG}: cannot read the arguments: {exc}") from None
    if not argv:
        parser.print_help()
        raise HelpShown()
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        raise MagicUsageError(f"{PROG}: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)} "
                              f"(see `{PROG} --help`)")
    args = parser.parse_args(argv)
    if args.command is None:
        raise MagicUsageError(f"{PROG}: missing a command, one of {', '.join(COMMANDS)} (see `{PROG} --help`)")
    if args.command == "stop" and bool(args.names) == args.all:
        raise MagicUsageError(f"{PROG} stop: name the daemons to stop, or pass --all (not both)")
    if args.command == "use" and (args.name is None) != args.none:
        raise MagicUsageError(f"{PROG} use: name a daemon, or pass --none to go back to child servers (not both)")
    if args.command == "start":
        try:
            args.launcher_options = DaemonOptions.launcher_options_of(args)
        except ValueError as exc:
            raise MagicUsageError(f"{PROG} start: {exc}") from None
    return args
