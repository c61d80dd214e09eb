"""How long a pool takes to be usable: ``start_pool(...)`` to its first answered call.

    python -m agentnb.bench.cluster_start --launcher ray --replicas 2 8 --trials 3 \\
        --option address=auto --option cpus_per_server=0.25

For each number of replicas, ``--trials`` times: start the pool with the launcher and its
options, place one agent on it and wait for one answered call, then stop the pool (not timed).
Prints one line per trial and the median per size. With the ray launcher, ``--plain-actors``
also times as many plain Ray actors (``num_cpus`` as ``cpus_per_server``) from creation to
each one's first answer, the engine's own start-up cost to compare with. ``--option KEY=VALUE`` is one launcher
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


def time_plain_ray_actors(count: int, options: dict[str, Any]) -> float:
    """Seconds from creating ``count`` plain Ray actors to the answer of each (they are killed afterwards)."""
    from agentnb.launch.ray_launcher import connect

    ray = connect(str(options.get("address", "auto")))

    class Plain:
        def ping(self) -> int:
            return 1

    remote = ray.remote(num_cpus=options.get("cpus_per_server", 1))(Plain)
    start = time.perf_counter()
    actors = [remote.remote() for _ in range(count)]
    try:
        ray.get([actor.ping.remote() for actor in actors])
        return time.perf_counter() - start
    finally:
        for actor in actors:
            ray.kill(actor)


def report(what: str, times: list[float], until: str) -> None:
    print(f"{what}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) {until}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launcher", default="local", choices=agentnb.DaemonOptions.LAUNCHERS)
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 8], help="pool sizes (default: 2 8)")
    parser.add_argument("--trials", type=int, default=3, help="starts per size (default: 3)")
    parser.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                        help="a launcher option (repeatable), e.g. address=auto")
    parser.add_argument("--plain-actors", action="store_true",
                        help="ray launcher: also time as many plain Ray actors, started and answering")
    args = parser.parse_args(argv)
    if args.plain_actors and args.launcher != "ray":
        parser.error("--plain-actors compares with Ray actors: it goes with --launcher ray")
    options = dict(args.option)
    for replicas in args.replicas:
        times, plain = [], []
        for trial in range(args.trials):
            times.append(time_to_first_call(replicas, args.launcher, options))
            print(f"{args.launcher} {replicas} replicas, trial {trial + 1}: {times[-1]:.2f} s", flush=True)
            if args.plain_actors:
                plain.append(time_plain_ray_actors(replicas, options))
                print(f"{replicas} plain ray actors, trial {trial + 1}: {plain[-1]:.2f} s", flush=True)
        report(f"{args.launcher} {replicas} replicas", times, "from start_pool to the first answered call")
        if plain:
            report(f"{replicas} plain ray actors", plain, "from creating them to the answer of each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
