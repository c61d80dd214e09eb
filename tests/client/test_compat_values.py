"""A result whose value is here travels as that value, changes included; one not fetched travels as a reference.

Seed programs pass the results of one agent to the next, often through a local agent
that changes them on the way (``x.content += ...``). The change must reach the next
agent: it must not fetch the original from the first agent's server.
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest
from agents_for_tests import Worker

from agentnb import AgentBase, AsyncResult, Msg


class Annotator(AgentBase):
    """A local (not distributed) agent of a seed program: it changes what it is given and passes it on."""

    def reply(self, x: Any = None) -> Any:
        x.content += " (checked)"
        return x


def test_a_changed_value_reaches_the_next_agent(server) -> None:
    first = Worker("A", to_dist=server.to_dist)
    second = Worker("B", to_dist=server.to_dist)

    # The value read from the result, changed, passed on.
    msg = first.reply(Msg("user", "hi")).result(timeout=30)
    msg.content += "!"
    assert second.reply(msg).content == "B(A(hi)!)"

    # Changed through the AsyncResult itself: the attribute is the value's, and the value travels.
    res = first.reply(Msg("user", "hi"))
    res.content += "!"
    assert res.content == "A(hi)!" and res.result().content == "A(hi)!"
    assert second.reply(res).content == "B(A(hi)!)"

    # Item assignment and changes in place, likewise.
    res = first.reply(Msg("user", "hi"))
    res["content"] = "replaced"
    assert second.reply(res).content == "B(replaced)"
    res = first.composite()
    res["items"].append(4)
    assert second.echo(res)["items"] == [1, 2, 3, 4]


def test_a_local_agent_between_two_distributed_ones_keeps_its_change(server) -> None:
    first = Worker("A", to_dist=server.to_dist)
    second = Worker("B", to_dist=server.to_dist)
    annotator = Annotator("local")  # built here, as in a seed program's pipeline
    x = first(Msg("user", "q"))
    x = annotator(x)
    x = second(x)
    assert x.content == "B(A(q) (checked))"


def test_a_ready_value_or_error_travels_without_its_server(start_server) -> None:
    server = start_server()
    worker = Worker("W", to_dist=server.to_dist)
    value = worker.make_box(7)
    assert value.result(timeout=30).value == 7
    value.value = 8  # a change made here travels too
    failed = worker.fail_later("bad input")
    with pytest.raises(ValueError, match="bad input"):
        failed.result(timeout=30)
    travelled_value, travelled_error = pickle.dumps(value), pickle.dumps(failed)

    server.kill()
    copy = pickle.loads(travelled_value)
    assert isinstance(copy, AsyncResult) and copy.done() and copy.result(timeout=5).value == 8
    with pytest.raises(ValueError, match="bad input"):  # the call's own error, not "server unavailable"
        pickle.loads(travelled_error).result(timeout=5)


def test_a_result_not_fetched_travels_as_a_reference(server) -> None:
    worker = Worker("W", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    pending = worker.hold(gate, Msg("W", "late"))
    reference = pickle.loads(pickle.dumps(pending))  # not ready: cannot carry a value
    assert not reference.done()
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert reference.result(timeout=30).content == "late"

    # A value that is here can still be handed on as a reference, on request.
    fetched = worker.make_box(1)
    fetched.result(timeout=30).value = 2
    assert pickle.loads(pickle.dumps(fetched)).result(timeout=30).value == 2
    assert pickle.loads(pickle.dumps(fetched.as_reference())).result(timeout=30).value == 1


def test_private_names_stay_the_result_s_own(server) -> None:
    res = Worker("W", to_dist=server.to_dist).make_box(3)
    res._note = "mine"  # names starting with _ are the AsyncResult's, not the value's
    assert res._note == "mine" and not hasattr(res.result(), "_note")
