"""RpcObjects and AsyncResults handed to other distributed agents."""

from __future__ import annotations

import pickle
import uuid

import pytest
from agents_for_tests import Worker
from helpers_runtime import wait_for

from agentnb import AsyncResult, Msg, RpcObject


@pytest.mark.parametrize("where", ["same server", "other server"])
def test_rpc_object_passed_to_another_agent(two_servers, where) -> None:
    first, second = two_servers
    asker = Worker("asker", to_dist=first.to_dist)
    answerer = Worker("answerer", to_dist=(first if where == "same server" else second).to_dist)
    assert asker.ask(answerer, "hello") == "answerer(hello)"
    assert answerer.reply(Msg("user", content="again")).content == "answerer(again)"  # still usable here


@pytest.mark.parametrize("where", ["same server", "other server"])
def test_async_result_passed_to_another_agent_is_resolved_by_its_server(two_servers, where) -> None:
    first, second = two_servers
    gate = uuid.uuid4().hex
    upstream = Worker("up", to_dist=first.to_dist)
    downstream = Worker("down", to_dist=(first if where == "same server" else second).to_dist)
    pending = upstream.hold(gate, Msg("up", content="payload"))
    # Handing on a result that is not ready does not wait for it here.
    chained = downstream.reply(pending)
    assert isinstance(chained, AsyncResult) and not pending.done()
    Worker("opener", to_dist=first.to_dist).release(gate)
    assert chained.result(timeout=30).content == "down(payload)"


def test_seed_pipeline_one_reply_feeds_the_next(two_servers) -> None:
    first, second = two_servers
    agents = [Worker(f"W{i}", to_dist=(first, second)[i % 2].to_dist) for i in range(4)]
    x = Msg("user", content="start")
    for agent in agents:
        x = agent(x)
    assert x.content == "W3(W2(W1(W0(start))))"


def test_async_results_inside_lists_and_dicts_are_resolved(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    a, b = worker.make_box(1), worker.make_box(2)
    echoed = worker.echo({"both": [a, b]})
    assert [box.value for box in echoed["both"]] == [1, 2]


def test_proxies_and_results_pickle_as_references(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    copy = pickle.loads(pickle.dumps(worker))
    assert isinstance(copy, RpcObject) and copy.agent_id == worker.agent_id
    assert copy.name == "W0"
    result = worker.make_box(5)
    result_copy = pickle.loads(pickle.dumps(result))
    assert result_copy.result(timeout=30).value == 5


def test_a_result_reference_learns_when_the_call_is_done(server) -> None:
    # As an AsyncResult returned by an agent, or unpickled, reaches a process: no pushed reply.
    worker = Worker("W0", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    reference = pickle.loads(pickle.dumps(worker.hold(gate, "v")))
    assert not reference.done()
    assert "pending" in repr(reference)
    Worker("opener", to_dist=server.to_dist).release(gate)
    wait_for(reference.done, what="the reference to see the call finish")
    assert reference.result() == "v"
    assert "done" in repr(reference)
