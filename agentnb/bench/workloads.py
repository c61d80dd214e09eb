"""Workloads W1-W7 of issue 7, each beside the same work on the floor where there is such work.

Every workload fills the :class:`~agentnb.bench.report.Metric` objects it
declares, one value per repetition. Times are taken with ``perf_counter`` in
this process, except W1, whose script runs in a process of its own (its
clock readings are wall-clock times, comparable across the two processes).
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from agentnb.bench.agents import BenchAgent, Buffer
from agentnb.bench.floor import FloorClient
from agentnb.bench.report import Metric, Target
from agentnb.bench.servers import AgentServerProcess, agent_server
from agentnb.rpc.rpc_object import wait_created

MIB = 1 << 20


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions; :meth:`full` is issue 7's benchmark, :meth:`quick` a smaller one."""

    quick: bool
    repetitions: int
    w1_agents: int
    w1_nap: float
    w2_agents: int
    w3_calls: int
    w4_calls: int
    w5_sizes_mib: tuple[int, ...]
    w6_agents: int
    w6_nap: float
    w7_agents: int
    timeout: float  # seconds a workload may take before it is recorded as failed
    server_capacity: int = 256
    w8_agents: int = 100_000
    w8_rounds: int = 3

    @classmethod
    def full(cls) -> Settings:
        return cls(quick=False, repetitions=5, w1_agents=5, w1_nap=1.0, w2_agents=100, w3_calls=2000,
                   w4_calls=5000, w5_sizes_mib=(64, 256), w6_agents=200, w6_nap=0.5, w7_agents=1000,
                   timeout=300.0)

    @classmethod
    def quick_mode(cls) -> Settings:
        return cls(quick=True, repetitions=3, w1_agents=5, w1_nap=0.2, w2_agents=100, w3_calls=500,
                   w4_calls=2000, w5_sizes_mib=(64,), w6_agents=200, w6_nap=0.5, w7_agents=300,
                   timeout=60.0, w8_agents=10_000)

    def with_w8_agents(self, agents: int) -> Settings:
        """These settings with W8 run at ``agents`` participants."""
        if agents < 2:
            raise ValueError("W8 needs at least 2 participants (one on each server)")
        return replace(self, w8_agents=agents)

    def w8_timeout(self) -> float:
        """Seconds W8 may take: its creation and rounds at a few times the targets' pace, at least ``timeout``."""
        return max(self.timeout, 60.0 + self.w8_agents * (1 + self.w8_rounds) * 300e-6)

    def to_json(self) -> dict:
        return asdict(self)


RunFn = Callable[[Settings, "AgentServerProcess | None", FloorClient, dict[str, Metric]], None]


@dataclass
class Workload:
    """One line of issue 7's table: its figures and the function that measures them."""

    key: str
    title: str
    metrics: list[Metric]
    run: RunFn
    needs_server: bool = True
    timeout: float | None = None  # seconds it may take, when not the settings' timeout

    def by_name(self) -> dict[str, Metric]:
        """The metrics by figure name ("p50" for "W3.p50")."""
        return {m.key.split(".", 1)[1]: m for m in self.metrics}


def build_workloads(s: Settings) -> list[Workload]:
    """W1-W7 with the figures, units and targets of issue 7 for settings ``s``."""
    nap_note = f"nap {s.w1_nap:g} s, quick" if s.w1_nap != 1.0 else ""
    # Issue 17's goals for the same-host path: 1 GiB/s at 64 MiB, 1.5 GiB/s at 256 MiB (issue 7's: 1.5x the floor).
    w5_targets = {64: Target(">=", 1024.0), 256: Target(">=", 1536.0)}
    w5_metrics = [
        Metric(f"W5.echo{size}", f"{size} MiB echo", "MiB/s", "higher", has_floor=True, target=w5_targets.get(size))
        for size in s.w5_sizes_mib
    ] + [
        Metric(f"W5.view{size}", f"{size} MiB echo of a value rebuilt from its buffer (as NumPy)", "MiB/s", "higher")
        for size in s.w5_sizes_mib
    ]
    return [
        Workload("W1", f"{s.w1_agents} child-mode agents x {s.w1_nap:g} s", [
            Metric("W1.start", f"start: create {s.w1_agents} agents in a new script", "s", "lower", note=nap_note),
            Metric("W1.answered", "script launch to first calls answered", "s", "lower",
                   target=Target("<=", round(0.5 + s.w1_nap, 3)), note=nap_note),
            Metric("W1.overhead", f"overhead of {s.w1_agents} parallel calls over the nap", "ms", "lower",
                   target=Target("<", 10.0), note=nap_note),
            Metric("W1.exit", "exit after the script's last line", "s", "lower",
                   target=Target("<=", 0.5), note=nap_note),
            Metric("W1.gone", "its servers gone after the last line", "s", "lower", note=nap_note),
        ], run_w1, needs_server=False),
        Workload("W2", "create agents on a running server", [
            Metric("W2.create", f"create {s.w2_agents} agents, per agent", "ms", "lower", target=Target("<", 1.0)),
        ], run_w2),
        Workload("W3", "sync no-op call", [
            Metric("W3.p50", f"sync no-op call p50 of {s.w3_calls}", "ms", "lower", has_floor=True,
                   target=Target("<=", 1.3, "ratio")),
            Metric("W3.p99", f"sync no-op call p99 of {s.w3_calls}", "ms", "lower", has_floor=True),
            Metric("W3.p50_stream", f"sync no-op call p50 of {s.w3_calls}, floor: open-stream ping-pong", "ms",
                   "lower", has_floor=True, target=Target("<=", 1.2, "ratio")),
            Metric("W3.p99_stream", f"sync no-op call p99 of {s.w3_calls}, floor: open-stream ping-pong", "ms",
                   "lower", has_floor=True, target=Target("<=", 2.0, "ratio")),
        ], run_w3),
        Workload("W4", f"{s.w4_calls} async calls over 4 agents", [
            Metric("W4.rate", f"{s.w4_calls} async calls over 4 agents", "calls/s", "higher", has_floor=True,
                   target=Target(">=", 1.5, "ratio"),
                   note="" if s.w4_calls == 5000 else "quick"),
        ], run_w4),
        Workload("W5", "large echo", w5_metrics, run_w5),
        Workload("W6", f"{s.w6_agents} agents x nap({s.w6_nap:g}) at once", [
            Metric("W6.wall", f"{s.w6_agents} agents x nap({s.w6_nap:g}) at once, wall", "s", "lower",
                   target=Target("<", 0.55)),
        ], run_w6),
        Workload("W7", "memory per idle agent", [
            Metric("W7.rss", f"server RSS per idle agent, over {s.w7_agents}", "KiB", "lower",
                   target=Target("<", 5.0)),
        ], run_w7),
        Workload("W8", f"{s.w8_agents:,} participants on two servers, a moderator on a third", [
            Metric("W8.create", f"create {s.w8_agents:,} participants from inside the moderator", "s", "lower",
                   target=Target("<", 120.0 * s.w8_agents / 1e6), note="target: 2 min a million"),
            Metric("W8.round", f"a round: the moderator asks all {s.w8_agents:,} and sums", "s", "lower",
                   target=Target("<", 40.0 * s.w8_agents / 1e6), note="target: 40 s a million"),
            Metric("W8.rss", "RSS of each participants' server after creation", "MiB", "lower"),
            Metric("W8.idle", "server memory per idle participant", "B", "lower", target=Target("<", 2048.0)),
            Metric("W8.moderator", "moderator's memory per participant it holds", "B", "lower"),
        ], run_w8, needs_server=False, timeout=s.w8_timeout()),
    ]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


# -- W1: a script in its own process, in child mode ------------------------------------------

W1_SCRIPT = textwrap.dedent('''\
    """The seed's web-agent example, shortened: {agents} agents whose reply sleeps {nap} s."""
    import time
    t_start = time.time()
    import json
    import agentnb
    from agentnb import AgentBase, Msg
    t_imported = time.time()


    class WebAgent(AgentBase):
        def reply(self, x=None):
            time.sleep({nap})
            return Msg(name=self.name, role="assistant", content=f"done {{x.content}}")


    agents = [WebAgent(f"W{{i}}").to_dist() for i in range({agents})]
    agentnb.wait_created(*agents)  # "start" is until they exist; to_dist only sent them
    t_created = time.time()
    results = [agent.reply(Msg(name="user", role="user", content=i)) for i, agent in enumerate(agents)]
    contents = [r.content for r in results]
    t_answered = time.time()
    assert contents == [f"done {{i}}" for i in range({agents})], contents
    print(json.dumps({{"t_start": t_start, "t_imported": t_imported, "t_created": t_created,
                      "t_answered": t_answered, "t_last": time.time()}}), flush=True)
    ''')


def run_w1(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W1: start, overhead and exit of a script that distributes agents in child mode.

    The script defines its agent class in ``__main__`` (it travels by value),
    as the seed's example does. "exit" is from the script's last line to its
    process ending; "gone" is until its stdout closes, which its child server
    (holding the same stdout) also has to do.
    """
    with tempfile.TemporaryDirectory(prefix="agentnb-bench-") as folder:
        script = os.path.join(folder, "w1_script.py")
        with open(script, "w") as out:
            out.write(W1_SCRIPT.format(agents=s.w1_agents, nap=s.w1_nap))
        for _ in range(s.repetitions):
            times = _run_script(script, folder, s.timeout / s.repetitions)
            m["start"].values.append(times["t_created"] - times["t_imported"])
            m["answered"].values.append(times["t_answered"] - times["t_launch"])
            m["overhead"].values.append((times["t_answered"] - times["t_created"] - s.w1_nap) * 1000)
            m["exit"].values.append(times["t_exit"] - times["t_last"])
            m["gone"].values.append(times["t_eof"] - times["t_last"])


def _run_script(script: str, cwd: str, timeout: float) -> dict[str, float]:
    """Run ``script``; return its own time readings and when it exited and closed its stdout."""
    stderr = tempfile.TemporaryFile()
    exited: dict[str, float] = {}
    t_launch = time.time()
    process = subprocess.Popen([sys.executable, script], cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)

    def wait_exit() -> None:  # a blocking waitpid: Popen.wait(timeout) would poll
        process.wait()
        exited["t_exit"] = time.time()

    waiter = threading.Thread(target=wait_exit, daemon=True)
    waiter.start()
    try:
        output, t_eof = _read_to_eof(process, timeout)
        waiter.join(timeout)
        if "t_exit" not in exited:
            raise TimeoutError(f"the W1 script did not exit within {timeout:.0f} s")
        if process.returncode != 0:
            stderr.seek(0)
            lines = stderr.read().decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"the W1 script failed (exit status {process.returncode}): {lines[-1]}")
        times = json.loads(output.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        stderr.close()
        if process.stdout is not None:
            process.stdout.close()
    return {**times, "t_launch": t_launch, "t_exit": exited["t_exit"], "t_eof": t_eof}


def _read_to_eof(process: subprocess.Popen, timeout: float) -> tuple[str, float]:
    """Everything ``process`` writes on stdout, and when its stdout closed (select wakes at once)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the W1 script's output (held by it or its servers) did not close "
                               f"within {timeout:.0f} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode(), time.time()
            chunks.append(chunk)


# -- W2-W7: on a running server ------------------------------------------------------------


def _agents(server: AgentServerProcess | None, count: int, prefix: str) -> list:
    """``count`` agents on ``server``, returned once every one of them exists there."""
    assert server is not None
    agents = [BenchAgent(f"{prefix}{i}", to_dist=server.to_dist) for i in range(count)]
    wait_created(*agents)  # to_dist only sent the creations
    return agents


def run_w2(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W2: creation of agents one after another on a server already running, ms per agent.

    ``to_dist`` returns once the creation is sent; the time runs until the
    server has answered for every object."""
    warm = _agents(server, 1, "warm")  # the connection is made by the first creation
    for rep in range(s.repetitions):
        start = time.perf_counter()
        created = _agents(server, s.w2_agents, f"r{rep}-")  # until every object exists, not only sent
        m["create"].values.append((time.perf_counter() - start) * 1000 / s.w2_agents)
        for agent in created:
            agent.close()
    warm[0].close()


def run_w3(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W3: latency of a sync no-op method, beside a unary echo of a few bytes and beside a
    ping-pong of the same bytes on an open bidi stream (agentnb's calls travel on one open stream)."""
    (agent,) = _agents(server, 1, "w3-")
    noop = agent.noop
    for _ in range(50):  # warm both paths
        noop()
    floor.latencies(50)
    for _ in range(s.repetitions):
        base = floor.latencies(s.w3_calls)
        m["p50"].floor.append(percentile(base, 50) * 1000)
        m["p99"].floor.append(percentile(base, 99) * 1000)
        stream = floor.stream_latencies(s.w3_calls)
        m["p50_stream"].floor.append(percentile(stream, 50) * 1000)
        m["p99_stream"].floor.append(percentile(stream, 99) * 1000)
        took = []
        for _ in range(s.w3_calls):
            start = time.perf_counter()
            noop()
            took.append(time.perf_counter() - start)
        m["p50"].values.append(percentile(took, 50) * 1000)
        m["p50_stream"].values.append(m["p50"].values[-1])
        m["p99"].values.append(percentile(took, 99) * 1000)
        m["p99_stream"].values.append(m["p99"].values[-1])


def run_w4(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W4: async calls spread over 4 agents, all submitted then all awaited; beside 4 threads of unary echoes."""
    agents = _agents(server, 4, "w4-")
    calls = [a.noop_async for a in agents]
    for result in [calls[i % 4]() for i in range(200)]:  # warm
        result.result(timeout=s.timeout)
    floor.threaded_rate(200)
    for _ in range(s.repetitions):
        m["rate"].floor.append(floor.threaded_rate(s.w4_calls, threads=4))
        start = time.perf_counter()
        results = [calls[i % 4]() for i in range(s.w4_calls)]
        for result in results:
            result.result(timeout=s.timeout)
        m["rate"].values.append(s.w4_calls / (time.perf_counter() - start))


def run_w5(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W5: a sync echo of a large ``bytes``, beside one unary message of the same bytes; MiB/s of round trip.

    A size that fails (on either side) is recorded as failed and not tried
    again; the other sizes go on.
    """
    (agent,) = _agents(server, 1, "w5-")
    agent.echo(b"warm")
    payloads = {size: os.urandom(size * MIB) for size in s.w5_sizes_mib}
    for _ in range(s.repetitions):
        for size, data in payloads.items():
            metric = m[f"echo{size}"]
            if metric.error is not None:
                continue
            side = "floor"
            try:
                metric.floor.append(size / _timed_echo(floor.echo, data))
                side = "agentnb"
                metric.values.append(size / _timed_echo(agent.echo, data))
            except Exception as exc:
                metric.fail(f"{side}: {type(exc).__name__}: {exc}")
            view = m[f"view{size}"]
            if view.error is None:
                try:
                    view.values.append(size / _timed_echo(lambda d: agent.echo(Buffer(d)).buffer, data))
                except Exception as exc:
                    view.fail(f"agentnb: {type(exc).__name__}: {exc}")


def _timed_echo(echo: Callable[[bytes], bytes], data: bytes) -> float:
    """Seconds ``echo(data)`` took; raises if what came back is not ``data``."""
    start = time.perf_counter()
    back = echo(data)
    elapsed = time.perf_counter() - start
    if back != data:
        raise RuntimeError(f"the {len(data) // MIB} MiB echo came back different ({len(back)} bytes)")
    return elapsed


def run_w6(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W6: one nap per agent, all at once, on a server whose capacity covers them all."""
    agents = _agents(server, s.w6_agents, "w6-")
    for _ in range(s.repetitions):
        start = time.perf_counter()
        results = [a.nap(s.w6_nap) for a in agents]
        for result in results:
            result.result(timeout=s.timeout)
        m["wall"].values.append(time.perf_counter() - start)


def run_w7(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W7: growth of the server's RSS per agent created and left idle."""
    assert server is not None
    kept = _agents(server, 20, "warm-")  # first-use costs (imports, the connection) are not an agent's
    for rep in range(s.repetitions):
        before = server.rss_kib()
        kept += _agents(server, s.w7_agents, f"r{rep}-")
        m["rss"].values.append((server.rss_kib() - before) / s.w7_agents)


# -- W8: the seed's distributed simulation at scale ----------------------------------------------


def run_w8(s: Settings, server: AgentServerProcess | None, floor: FloorClient, m: dict[str, Metric]) -> None:
    """W8: ``w8_agents`` participants (agentnb/examples/distributed_simulation.py, thinking 0 s) on two
    servers, created by a moderator on a third in its ``__init__``; ``w8_rounds`` rounds, each one call to
    every participant, summed by the moderator.

    Memory per idle participant is (RSS after creation - RSS before) / participants on a server, for
    each of the two; the moderator's is its server's growth per participant it holds proxies to.
    """
    from agentnb import create_many
    from agentnb.examples.distributed_simulation import Moderator, RandomParticipant

    with agent_server(32) as first, agent_server(32) as second, agent_server(32) as third:
        servers = (first, second)
        for x in servers:  # first-use costs (the participant's module, a connection) are not a participant's
            wait_created(*create_many(RandomParticipant, [{"name": "warm"}], to_dist=x.to_dist))
        before = [x.rss_kib() for x in (first, second, third)]
        started = time.perf_counter()
        # (A type checker reads Moderator.__init__, not RpcMeta.__call__, which takes to_dist.)
        moderator = Moderator("moderator", s.w8_agents, [x.to_dist for x in servers],  # type: ignore[call-arg]
                              max_value=100, sleep_time=0.0, to_dist=third.to_dist)
        created = moderator.created()
        m["create"].values.append(time.perf_counter() - started)
        after = [x.rss_kib() for x in (first, second, third)]
        if created != s.w8_agents:
            raise RuntimeError(f"the moderator holds {created} participants, not {s.w8_agents}")
        hosted = [(s.w8_agents + 1) // 2, s.w8_agents // 2]  # participant i is on server i % 2
        for kib, old, count in zip(after[:2], before[:2], hosted, strict=True):
            m["rss"].values.append(kib / 1024)
            m["idle"].values.append((kib - old) * 1024 / count)
        m["moderator"].values.append((after[2] - before[2]) * 1024 / s.w8_agents)
        for _ in range(s.w8_rounds):
            started = time.perf_counter()
            outcome = moderator().result(timeout=s.w8_timeout())
            m["round"].values.append(time.perf_counter() - started)
            if outcome.content["cnt"] != s.w8_agents:
                raise RuntimeError(f"{outcome.content['cnt']} of {s.w8_agents} participants answered")
