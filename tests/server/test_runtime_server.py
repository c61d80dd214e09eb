"""The agent server: mailboxes, capacity, its own state, agents' lifecycle, the result pool."""

from __future__ import annotations

import pickle
import threading
import time
import uuid

import pytest
from agents_for_tests import Worker
from helpers_runtime import wait_for

from agentnb import AgentNotFound, TaskNotFound, get_agent, list_agents


def test_mailbox_runs_one_agents_calls_in_order_never_overlapping(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    results = [worker.step(i) for i in range(50)]
    values = [r.result(timeout=60) for r in results]
    assert [v[0] for v in values] == list(range(50))
    assert not any(v[3] for v in values), "a call started while another one was running"
    for before, after in zip(values, values[1:], strict=False):
        assert before[2] <= after[1], f"call {after[0]} started before call {before[0]} ended"
    assert worker.seen == list(range(50))


def test_sync_calls_and_attribute_reads_wait_their_turn_in_the_mailbox(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    for i in range(20):
        worker.step(i)  # not waited for
    assert worker.seen == list(range(20))  # the read runs after the calls sent before it
    worker.step(20)
    assert worker.echo("sync") == "sync"
    assert worker.seen[-1] == 20


def test_mailbox_keeps_order_with_calls_from_many_threads(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    results: list = []
    lock = threading.Lock()

    def send(base: int) -> None:
        for i in range(base, base + 10):
            with lock:  # the send order is the order the mailbox must keep
                results.append(worker.step(i))

    threads = [threading.Thread(target=send, args=(b,)) for b in (0, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    values = [r.result(timeout=60) for r in results]
    assert not any(v[3] for v in values)
    assert worker.seen == [v[0] for v in values]


def test_different_agents_run_concurrently_up_to_capacity(start_server) -> None:
    # Five calls of five agents meet at a barrier: only possible if all run at once.
    server = start_server("--capacity", "5")
    agents = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(5)]
    barrier = uuid.uuid4().hex
    results = [a.meet(barrier, 5, 30) for a in agents]
    assert [r.result(timeout=60) for r in results] == [True] * 5


def test_capacity_limits_how_many_calls_run_at_once(start_server) -> None:
    server = start_server("--capacity", "2")
    agents = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(3)]
    barrier = uuid.uuid4().hex
    results = [a.meet(barrier, 3, 0.5) for a in agents]  # the third call cannot start in time
    errors = []
    for r in results:
        with pytest.raises(threading.BrokenBarrierError):
            r.result(timeout=60)
        errors.append(r.status)
    assert errors == ["failed"] * 3


def test_five_agents_sleeping_one_second_take_about_one_second(start_server) -> None:
    server = start_server("--capacity", "5")
    agents = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(5)]
    start = time.monotonic()
    results = [a.sleep_for(1.0) for a in agents]
    assert [r.result(timeout=60) for r in results] == [1.0] * 5
    elapsed = time.monotonic() - start
    assert elapsed < 0.6 * 5.0, f"5 x 1 s took {elapsed:.2f} s: the agents did not run in parallel"


def test_server_reports_capacity_busy_queued_and_agents(start_server) -> None:
    server = start_server("--capacity", "3")
    conn = server.connection()
    info = conn.info()
    assert (info.capacity, info.busy, info.queued, info.agents) == (3, 0, 0, 0)
    worker = Worker("W0", to_dist=server.to_dist)
    opener = Worker("opener", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    held = worker.hold(gate, 1)
    queued = worker.echo  # a second call of the same agent waits in its mailbox
    waiting = worker.step(0)
    info = wait_for(lambda: (i := conn.info()).busy == 1 and i.queued == 1 and i,
                    what="one busy and one queued call")
    assert info.agents == 2
    opener.release(gate)
    assert held.result(timeout=30) == 1 and waiting.result(timeout=30)[0] == 0
    assert queued(5) == 5
    info = wait_for(lambda: (i := conn.info()).busy == 0 and i, what="the server to be idle")
    assert info.queued == 0 and info.completed >= 5


def test_list_get_and_delete_agents(server) -> None:
    a = Worker("alpha", to_dist=server.to_dist)
    b = Worker("beta", to_dist=server.to_dist)
    listed = list_agents(server.host, server.port, server.token)
    assert sorted(p.name for p in listed) == ["alpha", "beta"]
    again = get_agent("alpha", server.host, server.port, server.token)
    assert again.agent_id == a.agent_id and again.echo(3) == 3
    a.close()
    with pytest.raises(AgentNotFound):
        a.echo(1)
    assert [p.name for p in list_agents(server.host, server.port, server.token)] == ["beta"]
    assert b.echo(2) == 2
    with pytest.raises(AgentNotFound):
        get_agent("alpha", server.host, server.port, server.token)


def _reference(result):
    """The AsyncResult as another process holding it would see it (read from the pool)."""
    return pickle.loads(pickle.dumps(result.as_reference()))


def test_result_pool_keeps_at_most_max_len_results(start_server) -> None:
    server = start_server("--max-len", "2")
    worker = Worker("W0", to_dist=server.to_dist)
    results = [worker.make_box(i) for i in range(3)]
    assert [r.result(timeout=30).value for r in results] == [0, 1, 2]
    assert _reference(results[2]).result(timeout=30).value == 2
    with pytest.raises(TaskNotFound):
        _reference(results[0]).result(timeout=30)


def test_result_pool_forgets_results_after_max_expire_time(start_server) -> None:
    server = start_server("--max-expire-time", "0.5")
    worker = Worker("W0", to_dist=server.to_dist)
    result = worker.make_box(1)
    assert result.result(timeout=30).value == 1  # the caller got it, pushed

    def expired() -> bool:
        try:
            _reference(result).result(timeout=30)
        except TaskNotFound:
            return True
        return False

    wait_for(expired, timeout=20, interval=0.1, what="the result to expire")


def test_a_client_that_half_closes_still_gets_the_replies_of_its_calls(server) -> None:
    """A session whose client sent its last call ends only once every call it sent has its reply."""
    import grpc

    from agentnb import __version__
    from agentnb._proto import agentnb_pb2 as pb
    from agentnb.wire import codec
    from agentnb.wire.handshake import authenticate
    from agentnb.wire.protocol import SERVICE

    worker = Worker("w", to_dist=server.to_dist)
    calls = [pb.Call(seq=i, kind=pb.CALL, agent_id=worker.agent_id, method="sleep_for",
                     payload=codec.dumps(((0.2,), {}))) for i in (1, 2, 3)]
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        session = channel.stream_stream(f"/{SERVICE}/Session")
        frames = iter([pb.ClientFrame(calls=calls).SerializeToString()])  # then the client half-closes
        stream = session(frames, metadata=authenticate(channel, server.token, "test", __version__), timeout=30)
        replies = [reply for raw in stream for reply in pb.ServerFrame.FromString(raw).replies]
    assert sorted(r.seq for r in replies) == [1, 2, 3]  # the stream ended by itself, after the last reply
    assert all(r.status == pb.OK for r in replies)
    assert worker.sleep_for(0).result(timeout=30) == 0  # the server carries on
