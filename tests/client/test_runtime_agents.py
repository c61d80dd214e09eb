"""Msg, AgentBase and agentnb.init, locally and on a real server."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import pytest
from agents_for_tests import Worker

import agentnb
from agentnb import AgentBase, AsyncResult, Msg
from agentnb.config import clear_model_configs, model_configs


def test_msg_reads_as_attributes_and_items() -> None:
    msg = Msg(name="system", role="system", content={"url": "page_1"})
    assert msg.content == {"url": "page_1"} == msg["content"]
    assert (msg.name, msg["role"]) == ("system", "system")
    msg.extra = 1
    assert msg["extra"] == 1
    with pytest.raises(AttributeError):
        _ = msg.missing


def test_msg_has_its_own_id_and_the_time_it_was_made_unless_given() -> None:
    before = time.strftime("%Y-%m-%d %H:%M:%S")
    first, second = Msg("W0", "a"), Msg("W0", "b")
    after = time.strftime("%Y-%m-%d %H:%M:%S")
    assert before <= first.timestamp <= second.timestamp <= after
    assert len(first.id) == 32 and first.id != second.id
    given = Msg("W0", "c", id="mine", timestamp="2020-01-01 00:00:00")
    assert (given.id, given.timestamp) == ("mine", "2020-01-01 00:00:00")


def test_msg_survives_pickling_as_a_msg() -> None:
    msg = Msg("W0", content=[1, 2], role="assistant")
    copy = pickle.loads(pickle.dumps(msg))
    assert isinstance(copy, Msg)
    assert copy == msg and copy.content == [1, 2]


class TaggedMsg(Msg):
    """A user's own kind of message."""


def test_msg_subclass_survives_pickling_as_itself(server) -> None:
    msg = TaggedMsg("user", content="x")
    assert type(pickle.loads(pickle.dumps(msg))) is TaggedMsg
    echoed = Worker("W0", to_dist=server.to_dist).echo(msg)  # there and back
    assert type(echoed) is TaggedMsg and echoed == msg


class Doubler(AgentBase):
    def reply(self, x: Msg | None = None) -> Msg:
        return Msg(self.name, content=x.content * 2)


def test_local_agent_call_is_its_reply() -> None:
    agent = Doubler("D")
    out = agent(Msg("user", content=21))
    assert isinstance(out, Msg) and out.content == 42 and out.name == "D"
    assert agent.reply(Msg("user", content="a")).content == "aa"


def test_agent_base_reply_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError):
        AgentBase("plain").reply(Msg("user", content=1))


def test_distributed_reply_and_call_are_async(server) -> None:
    agent = Worker("W0", to_dist=server.to_dist)
    by_reply = agent.reply(Msg("user", content="x"))
    by_call = agent(Msg("user", content="y"))
    assert isinstance(by_reply, AsyncResult) and isinstance(by_call, AsyncResult)
    assert by_reply.content == "W0(x)"
    assert by_call.result().content == "W0(y)"
    assert isinstance(by_call.result(), Msg)


@pytest.fixture
def no_model_configs() -> Iterator[None]:
    """The test starts with no model configs in this process; the ones there before come back after."""
    before = list(model_configs().values())
    clear_model_configs()
    try:
        yield
    finally:
        clear_model_configs()
        if before:
            agentnb.init(model_configs=before)


def test_init_is_optional_and_accepts_model_configs(no_model_configs: None) -> None:
    agentnb.init()  # harmless without arguments
    assert model_configs() == {}
    agentnb.init(model_configs=[{"config_name": "tiny", "model_type": "echo"}])
    assert model_configs() == {"tiny": {"config_name": "tiny", "model_type": "echo"}}
    with pytest.raises(ValueError):
        agentnb.init(model_configs=[{"model_type": "no-name"}])
    assert list(model_configs()) == ["tiny"]  # a refused config adds nothing
