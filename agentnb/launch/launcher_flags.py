"""The command-line flags of the launchers, shared by ``%agent_server start`` and ``as_server start``.

``--launcher local|slurm|ray`` picks what starts the servers; the engine flags
(``--partition``, ``--address``, ...) become its ``launcher_options``, and a flag
given to a launcher that does not take it is refused by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agentnb.launch.launchers import LAUNCHERS, LOCAL

# The flags that are a cluster launcher's options, by option name, and the launchers that take each.
LAUNCHER_FLAGS = {"partition": ("slurm",), "time": ("slurm",), "mem_per_server": ("slurm",),
                  "sbatch_lines": ("slurm",), "address": ("ray",), "servers_per_node": ("ray",),
                  "cpus_per_server": ("slurm", "ray")}


def number_type(kind: type, minimum: float, what: str) -> Callable[[str], Any]:
    """An argparse ``type=``: the text as ``kind``, at least ``minimum``; the error says ``what`` was expected."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    convert.__name__ = what
    return convert


positive_int = number_type(int, 1, "a whole number of at least 1")
_cpus = number_type(float, 0.0, "a number of CPUs (0 or more)")


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--launcher`` and the engine flags to ``parser`` (read them back with :func:`launcher_options`)."""
    parser.add_argument("--launcher", choices=LAUNCHERS, default=LOCAL,
                        help="what starts the servers: local (this machine, default), slurm (one Slurm job) "
                             "or ray (Ray actors on a Ray cluster's nodes)")
    parser.add_argument("--cpus-per-server", type=_cpus,
                        help="CPUs each server gets (default: 1): a whole number for slurm, a fraction too for ray")
    slurm = parser.add_argument_group("slurm launcher options")
    slurm.add_argument("--partition", help="the job's partition (default: the cluster's)")
    slurm.add_argument("--time", help="the job's time limit: minutes, HH:MM:SS or D-HH:MM:SS")
    slurm.add_argument("--mem-per-server", help="memory each server gets, e.g. 2G")
    slurm.add_argument("--sbatch", action="append", metavar="LINE", dest="sbatch_lines",
                       help="one more #SBATCH line, e.g. --sbatch=--account=lab (repeatable)")
    ray = parser.add_argument_group("ray launcher options")
    ray.add_argument("--address", help="the Ray cluster: auto (default: the one this machine is part of), "
                                       "its head's host:port, or ray://host:10001")
    ray.add_argument("--servers-per-node", type=positive_int,
                     help="this many servers on each live node in turn (default: spread over the nodes)")


def launcher_options(args: argparse.Namespace) -> dict[str, Any]:
    """The launcher options among the parsed flags.

    Raises:
        ValueError: a flag of another launcher (naming it and the launchers that take it),
            or a fractional ``--cpus-per-server`` for Slurm.
    """
    given = {key: getattr(args, key) for key in LAUNCHER_FLAGS if getattr(args, key) is not None}
    wrong = [key for key in given if args.launcher not in LAUNCHER_FLAGS[key]]
    if wrong:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        takers = sorted({launcher for key in wrong for launcher in LAUNCHER_FLAGS[key]})
        raise ValueError(f"{flags} only apply to --launcher {' or '.join(takers)}, not {args.launcher}")
    cpus = given.get("cpus_per_server")
    if args.launcher == "slurm" and cpus is not None:
        if cpus != int(cpus) or cpus < 1:
            raise ValueError(f"--cpus-per-server for slurm is a whole number of at least 1, got {cpus:g}")
        given["cpus_per_server"] = int(cpus)
    return given
