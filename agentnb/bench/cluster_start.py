"""How long a pool takes to be usable: ``start_pool(...)`` to its first answered call.

    python -m agentnb.bench.cluster_start --launcher ray --replicas 2 8 --trials 3 \\
        --option address=auto --option cpus_per_server=0.25

For each number of replicas, ``--trials`` times: start the pool with the launcher and its
options, place one agent on it and wait for one answered call, then stop the pool (not timed).
Prints one line per trial and the median per size. ``--option KEY=VALUE`` is one launcher
option (a value that reads as JSON, such as ``0.25`` or ``2``, is taken as such). The agent
class (:class:`agentnb.bench.agents.BenchAgent`) must be importable on the nodes: install
agentnb there, as the launchers require anyway.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import agentnb
from agentnb.bench.agents import BenchAgent


def option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as the pair (KEY, VALUE read as JSON, else the text)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def time_to_first_call(replicas: int, launcher: str, options: dict[str, Any]) -> float:
    """Seconds from start_pool to the first answered call (the pool is stopped afterwards)."""
    start = time.perf_counter()
    pool = agentnb.start_pool(replicas, launcher=launcher, launcher_options=options or None)
    try:
        BenchAgent("first", to_dist=pool).noop()
        return time.perf_counter() - start
    finally:
        pool.stop(grace=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launcher", default="local", choices=agentnb.DaemonOptions.LAUNCHERS)
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 8], help="pool sizes (default: 2 8)")
    parser.add_argument("--trials", type=int, default=3, help="starts per size (default: 3)")
    parser.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                        help="a launcher option (repeatable), e.g. address=auto")
    args = parser.parse_args(argv)
    options = dict(args.option)
    for replicas in args.replicas:
        times = []
        for trial in range(args.trials):
            times.append(time_to_first_call(replicas, args.launcher, options))
            print(f"{args.launcher} {replicas} replicas, trial {trial + 1}: {times[-1]:.2f} s", flush=True)
        print(f"{args.launcher} {replicas} replicas: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}) from start_pool to the first answered call", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
