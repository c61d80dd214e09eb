"""Faults: lost servers, timeouts, cancellation, load beyond capacity, deadlocks, shutdown."""

from __future__ import annotations

import gc
import signal
import threading
import time

import pytest
from helpers_runtime import free_port, wait_for

from agentnb import AgentBase, AgentServerError, DeadlockError, ServerUnavailable, TaskCancelled, async_func


class Worker(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ran: list[int] = []
        self.started = threading.Event()

    @async_func
    def nap(self, seconds: float, tag: int = 0) -> int:
        self.ran.append(tag)
        time.sleep(seconds)
        return tag

    def nap_sync(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def echo(self, value):
        return value

    def history(self) -> list[int]:
        return list(self.ran)


class Caller(AgentBase):
    def ask(self, other, me) -> str:
        return other.answer(me)

    def answer(self, other) -> str:
        return other.answer_back()

    def answer_back(self) -> str:
        return "back"


class Boom(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        raise ValueError(f"cannot build {name}")


def wait_until(predicate, timeout: float = 30.0):
    return wait_for(predicate, timeout, interval=0.02)


def test_server_killed_during_a_sync_call(server):
    agent = Worker("w", to_dist=server.to_dist)
    errors: list[BaseException] = []
    finished = threading.Event()

    def call() -> None:
        try:
            agent.nap_sync(60)
        except BaseException as exc:
            errors.append(exc)
        finished.set()

    threading.Thread(target=call, daemon=True).start()
    conn = server.connection()
    wait_until(lambda: conn.info().busy == 1)
    killed_at = time.monotonic()
    server.kill(signal.SIGKILL)
    assert finished.wait(15), "the caller hangs after its server died"
    assert time.monotonic() - killed_at < 15
    assert isinstance(errors[0], ServerUnavailable)
    assert f"{server.port}" in str(errors[0])


def test_server_killed_with_async_calls_pending(server):
    agent = Worker("w", to_dist=server.to_dist)
    results = [agent.nap(60, i) for i in range(5)]
    wait_until(lambda: server.connection().info().busy == 1)
    server.kill(signal.SIGKILL)
    for res in results:
        with pytest.raises(ServerUnavailable):
            res.result(timeout=15)
        assert res.status == "failed"


def test_unreachable_server_is_a_clear_error():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=str(port)):
        Worker("w", to_dist={"host": "127.0.0.1", "port": port, "token": "t"})
    assert time.monotonic() - started < 15


def test_result_timeout_then_value(server):
    agent = Worker("w", to_dist=server.to_dist)
    res = agent.nap(1.5, 7)
    with pytest.raises(TimeoutError):
        res.result(timeout=0.05)
    assert not res.done()
    assert res.result(timeout=60) == 7


def test_cancelled_tasks_never_run(server):
    agent = Worker("w", to_dist=server.to_dist)
    first = agent.nap(1.0, 0)
    queued = [agent.nap(0, i) for i in range(1, 4)]
    wait_until(lambda: first.status == "running" or server.connection().info().busy == 1)
    assert all(res.cancel() for res in queued)
    assert first.cancel() is False  # already running
    for res in queued:
        with pytest.raises(TaskCancelled):
            res.result(timeout=30)
        assert res.status == "cancelled"
    assert first.result(timeout=30) == 0
    assert agent.history() == [0]


def test_five_thousand_async_calls_outstanding(server):
    agents = [Worker(f"w{i}", to_dist=server.to_dist) for i in range(4)]
    results = [agents[i % 4].nap(0, i) for i in range(5000)]
    assert [res.result(timeout=120) for res in results] == list(range(5000))


def test_init_failure_is_raised_by_the_first_use(server):
    keeper = Worker("w", to_dist=server.to_dist)  # the connection answers: creations no longer wait for their reply
    boom = Boom("B0", to_dist=server.to_dist)
    with pytest.raises(ValueError, match="cannot build B0") as err:
        boom.reply()
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "raised in Boom" in notes and "created" in notes and "does not exist" in notes
    assert "creation failed" in repr(boom)
    with pytest.raises(ValueError, match="cannot build B0"):  # every use says so, not only the first
        _ = boom.name
    boom.close()  # nothing to delete: not an error
    assert server.connection().info().agents == 1
    assert keeper.name == "w"


def test_work_beyond_capacity_queues_and_completes(start_server):
    srv = start_server("--capacity", "2")
    agents = [Worker(f"w{i}", to_dist=srv.to_dist) for i in range(5)]
    results = [a.nap(0.5, i) for i, a in enumerate(agents)]
    info = wait_until(lambda: (lambda i: i if i.busy == 2 and i.queued >= 1 else None)(srv.connection().info()))
    assert info.capacity == 2
    assert [r.result(timeout=60) for r in results] == list(range(5))
    assert srv.connection().info().queued == 0


def test_synchronous_cycle_is_detected_not_deadlocked(server):
    a = Caller("A", to_dist=server.to_dist)
    b = Caller("B", to_dist=server.to_dist)
    started = time.monotonic()
    with pytest.raises(DeadlockError, match="waiting synchronously"):
        a.ask(b, a)  # A waits on B.answer(A), which calls A.answer_back(): a cycle
    assert time.monotonic() - started < 30
    assert a.answer_back() == "back"  # both agents are free again
    assert b.answer_back() == "back"


def test_sigterm_lets_running_work_finish_and_refuses_new_work(server):
    agent = Worker("w", to_dist=server.to_dist)
    # The probe is another agent: a probe call accepted before the signal took effect must not
    # queue behind the nap (an agent runs one call at a time) and then meet a stopped server.
    probe = Worker("probe", to_dist=server.to_dist)
    running = agent.nap(4, 1)  # long enough for the refusal to be seen on a loaded machine
    wait_until(lambda: server.connection().info().busy == 1)
    server.process.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            probe.echo(1)
        except AgentServerError as exc:
            return "shutting down" in str(exc)
        return False

    wait_until(refused, timeout=10)
    assert running.result(timeout=30) == 1
    assert server.process.wait(30) == 0


def test_sigterm_lets_calls_running_side_by_side_deliver_their_results(server):
    """Calls that finish together during a graceful stop all reach their caller, the last
    ones included (small replies of concurrent calls go out through one replier thread)."""
    agents = [Worker(f"w{i}", to_dist=server.to_dist) for i in range(4)]
    running = [agent.nap(3, i) for i, agent in enumerate(agents)]
    wait_until(lambda: server.connection().info().busy == 4)
    server.process.send_signal(signal.SIGTERM)
    assert [result.result(timeout=30) for result in running] == [0, 1, 2, 3]
    assert server.process.wait(30) == 0


def test_dropped_proxies_free_their_agents(server):
    conn = server.connection()
    keep = Worker("keep", to_dist=server.to_dist)
    for i in range(10_000):
        Worker(f"w{i}", to_dist=server.to_dist)  # the proxy is dropped at once
    gc.collect()
    assert wait_until(lambda: conn.info().agents == 1, timeout=60)
    assert keep.echo("still here") == "still here"
    closed = Worker("closed", to_dist=server.to_dist)
    closed.close()
    assert conn.info().agents == 1


@pytest.mark.timeout(120)
def test_a_call_of_an_unknown_kind_is_refused_and_its_agent_goes_on(server):
    """A kind the server does not know (any client may send one) gets an error reply, and the
    agent's later calls still run: nothing that describes the call (the log, the history) may
    stop the worker or leave the agent's mailbox stuck."""
    import grpc

    from agentnb import __version__
    from agentnb._proto import agentnb_pb2 as pb
    from agentnb.wire.handshake import authenticate

    worker = Worker("W0", to_dist=server.to_dist)
    assert worker.echo(1) == 1
    channel = grpc.insecure_channel(f"{server.host}:{server.port}")
    try:
        metadata = authenticate(channel, server.token, "test", __version__)
        session = channel.stream_stream("/agentnb.AgentServer/Session")
        odd = pb.Call(seq=7, kind=131922, agent_id=worker.agent_id, task_id="t-odd", watch=True)
        replies = [pb.ServerFrame.FromString(raw) for raw in
                   session(iter([pb.ClientFrame(calls=[odd]).SerializeToString()]), metadata=metadata, timeout=30)]
        assert [r.status for frame in replies for r in frame.replies][-1] == pb.ERROR
    finally:
        channel.close()
    assert worker.echo(2) == 2  # the agent was not left stuck behind it
