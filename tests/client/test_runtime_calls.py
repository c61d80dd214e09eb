"""Sync and async calls, AsyncResult, attribute reads and private names."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from agents_for_tests import Box, Worker
from helpers_runtime import completed_when_idle, wait_for

import agentnb
from agentnb import AsyncResult, Msg


@pytest.fixture
def worker(server):
    made = Worker("W0", to_dist=server.to_dist)
    agentnb.wait_created(made)  # the tests count the server's work from here
    return made


def gate_name() -> str:
    return uuid.uuid4().hex


def test_sync_method_blocks_and_returns_the_value(server, worker) -> None:
    assert worker.echo({"k": [1, 2]}) == {"k": [1, 2]}
    assert worker.pid() == server.process.pid  # it ran on the server


def test_async_method_returns_before_the_call_finishes(server, worker) -> None:
    gate = gate_name()
    result = worker.hold(gate, "released")  # would block forever if the call were synchronous
    assert isinstance(result, AsyncResult)
    assert not result.done()
    with pytest.raises(TimeoutError):
        result.result(timeout=0.2)
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert result.result(timeout=30) == "released"
    assert result.done()


def test_results_are_pushed_without_asking(server, worker) -> None:
    gate = gate_name()
    result = worker.hold(gate, 1)
    finished = threading.Event()
    result.add_done_callback(lambda r: finished.set())
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert finished.wait(30), "the done callback never ran"
    assert result.done()  # known before result() was ever called


def test_composite_results_resolve_on_item_and_attribute_access(worker) -> None:
    result = worker.composite()
    assert result["a"] == 1
    assert result["msg"].content == "hello"
    assert result["items"][2] == 3
    assert result["box"].value == 42
    assert worker.make_box(7).value == 7
    msg = worker.reply(Msg("user", content="q"))
    assert msg.content == "W0(q)" and msg["name"] == "W0"


def test_await_an_async_result(worker) -> None:
    async def main() -> list:
        first = worker.sleep_for(0.05)
        second = worker.make_box("x")
        return [await first, (await second).value]

    assert asyncio.run(main()) == [0.05, "x"]


def test_await_a_result_that_is_already_done(worker) -> None:
    result = worker.make_box(1)
    result.result(timeout=30)

    async def main() -> Box:
        return await result

    assert asyncio.run(main()).value == 1


def test_attribute_reads_are_forwarded_and_current(worker) -> None:
    assert worker.name == "W0"
    worker.step(1).result(timeout=30)
    worker.step(2).result(timeout=30)
    assert worker.seen == [1, 2]  # read from the server each time, not cached
    with pytest.raises(AttributeError):
        _ = worker.no_such_attribute
    assert not hasattr(worker, "no_such_attribute")


def test_attributes_cannot_be_set_on_a_proxy(worker) -> None:
    with pytest.raises(AttributeError, match="cannot set"):
        worker.name = "other"


def test_private_names_are_refused_before_anything_is_sent(server, worker) -> None:
    conn = server.connection()
    completed = completed_when_idle(conn)
    with pytest.raises(AttributeError, match="private"):
        worker._secret()
    with pytest.raises(AttributeError, match="private"):
        _ = worker._private_attribute
    assert conn.info().completed == completed  # the server did no work for them
    assert worker.echo(1) == 1


def test_every_proxy_of_a_process_shares_one_connection_per_server(start_server) -> None:
    one, two = start_server(), start_server()
    a, b = Worker("A", to_dist=one.to_dist), Worker("B", to_dist=one.to_dist)
    c = Worker("C", to_dist=two.to_dist)
    # A task id is its connection's client id, the call's number on that connection, a random part.
    results = [proxy.sleep_for(0) for proxy in (a, b, a, c)]
    assert [r.result(timeout=30) for r in results] == [0, 0, 0, 0]
    (a1, n1, _), (b1, n2, _), (a2, n3, _), (c1, _, _) = (r.task_id.split("-") for r in results)
    assert a1 == b1 == a2 == one.connection().client_id  # the process's one connection to that server
    assert int(n1) < int(n2) < int(n3)  # numbered by that one connection, whichever proxy called
    assert c1 == two.connection().client_id != a1


def test_many_async_calls_from_many_threads(server) -> None:
    agents = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(4)]
    results: dict[int, list] = {}

    def drive(i: int) -> None:
        results[i] = [agents[i].reply(Msg("user", content=n)) for n in range(25)]

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(4):
        assert [r.result(timeout=30).content for r in results[i]] == [f"W{i}({n})" for n in range(25)]


def test_result_timeout_does_not_lose_the_value(server, worker) -> None:
    gate = gate_name()
    result = worker.hold(gate, "late")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        result.result(timeout=0.1)
    assert time.monotonic() - start < 10
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert wait_for(result.done, what="the held call to finish")
    assert result.result() == "late"
