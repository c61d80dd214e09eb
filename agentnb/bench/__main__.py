"""``python -m agentnb.bench [--quick] [--json PATH] [--compare OLD.json] [--only W3,W5] [--w8-agents N]``.

Runs W1-W7 of issue 7 and W8 of issue 17 (a million agents: ``--only W8 --w8-agents 1000000``)
and prints the table (then the figures of issue 2);
writes the JSON file; with ``--compare``, prints the change from an earlier
run. Exits with 1 when a workload failed (the table says why), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable

from agentnb.bench import report
from agentnb.bench.floor import FloorClient
from agentnb.bench.servers import HOST, agent_server, floor_server
from agentnb.bench.workloads import Settings, Workload, build_workloads

DEFAULT_JSON = "bench-results/latest.json"


class WorkloadTimeout(Exception):
    """A workload ran past its time; its thread is still blocked somewhere."""

    def __init__(self, seconds: float, thread: threading.Thread) -> None:
        super().__init__(f"timed out after {seconds:.0f} s")
        self.thread = thread


def run_with_deadline(fn: Callable[[], None], seconds: float) -> None:
    """Run ``fn`` on a thread; raise its exception, or WorkloadTimeout if it is not done in time.

    On a timeout the caller stops the servers, which fails whatever the
    thread is blocked on, and then joins the thread.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="agentnb-bench-workload", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise WorkloadTimeout(seconds, thread)
    if errors:
        raise errors[0]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    reason = f"{type(exc).__name__}: {first}" if not isinstance(exc, WorkloadTimeout) else first
    return reason if len(reason) <= 160 else reason[:157] + "..."


def run_workload(workload: Workload, settings: Settings, floor: FloorClient) -> None:
    """Run one workload on a fresh agent server; record a failure in its metrics instead of raising."""
    metrics = workload.by_name()
    started = time.perf_counter()
    print(f"{workload.key} {workload.title} ...", file=sys.stderr, end="", flush=True)
    reason: str | None = None
    blocked: threading.Thread | None = None
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(agent_server(settings.server_capacity)) if workload.needs_server else None
            try:
                run_with_deadline(lambda: workload.run(settings, server, floor, metrics),
                                  workload.timeout or settings.timeout)
            except Exception as exc:
                reason = _reason(exc)
                blocked = exc.thread if isinstance(exc, WorkloadTimeout) else None
                if server is not None and server.process.poll() is not None:
                    reason += f" (the server exited with status {server.process.returncode}: {server.log_tail()})"
    except Exception as exc:  # the server did not start, or did not stop
        reason = reason or _reason(exc)
    if blocked is not None:
        blocked.join(10)  # the server is stopped: whatever the thread waited on has failed
    if reason is None:
        print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        return
    for metric in workload.metrics:
        if len(metric.values) < settings.repetitions:
            metric.fail(reason)
    print(f" FAILED ({reason})", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m agentnb.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="3 repetitions, shorter W1 naps, fewer calls, no 256 MiB echo: under a minute")
    parser.add_argument("--json", default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results (default: {DEFAULT_JSON})")
    parser.add_argument("--compare", default=None, metavar="OLD.json", help="print the change from an earlier run")
    parser.add_argument("--only", default=None, metavar="W1,W3", help="run only these workloads")
    parser.add_argument("--w8-agents", type=int, default=None, metavar="N",
                        help="participants of W8 (default 100,000; 10,000 with --quick)")
    args = parser.parse_args(argv)

    old = None
    if args.compare:  # read it first: a typo should not cost a whole run
        with open(args.compare) as src:
            old = json.load(src)
    settings = Settings.quick_mode() if args.quick else Settings.full()
    if args.w8_agents is not None:
        try:
            settings = settings.with_w8_agents(args.w8_agents)
        except ValueError as exc:
            parser.error(f"--w8-agents: {exc}")
    workloads = build_workloads(settings)
    if args.only:
        wanted = {key.strip().upper() for key in args.only.split(",")}
        workloads = [w for w in workloads if w.key in wanted]

    started = time.perf_counter()
    with floor_server() as port:
        floor = FloorClient(HOST, port)
        try:
            for workload in workloads:
                run_workload(workload, settings, floor)
        finally:
            floor.close()
    elapsed = time.perf_counter() - started

    metrics = [m for w in workloads for m in w.metrics]
    data = report.results_json(metrics, {**settings.to_json(), "elapsed_s": round(elapsed, 1)}, argv)
    machine = data["machine"]
    mode = "quick" if settings.quick else "full"
    print(f"agentnb benchmark ({mode}, {settings.repetitions} repetitions, {elapsed:.0f} s) on "
          f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
          f"grpcio {machine['grpcio']}; floor = bare grpcio unary echo of raw bytes (W3.p50_stream, W3.p99_stream: "
          "one message each way on an open bidi stream); ratio = agentnb median / floor median")
    print(report.table(metrics))
    print()
    print(report.issue2_table(metrics))
    report.write_json(data, args.json)
    print(f"\nresults written to {args.json}")
    if old is not None:
        print(f"\nchange from {args.compare}:")
        print(report.compare(old, data))
    return 1 if any(m.error for m in metrics) else 0


if __name__ == "__main__":
    sys.exit(main())
