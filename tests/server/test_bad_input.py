"""Bad input gets a clear error naming what was wrong, and hurts nothing else."""

from __future__ import annotations

import threading
import uuid

import pytest
from helpers_runtime import completed_when_idle

import agentnb
from agentnb import AgentBase, AgentNotFound, SerializationError, async_func
from agentnb.rpc.rpc_object import RpcObject


class Keeper(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.items: list = []

    def add(self, item) -> int:
        self.items.append(item)
        return len(self.items)

    def size(self) -> int:
        return len(self.items)

    def bad_result(self):
        return threading.Lock()  # cannot be pickled

    @async_func
    def echo(self, data: bytes) -> bytes:
        return data

    def _secret(self) -> str:
        return "secret"


def test_unknown_agent_id(server):
    ghost = RpcObject(server.connection(), uuid.uuid4().hex, "Keeper", {"add": "sync"})
    with pytest.raises(AgentNotFound, match="no agent with id"):
        ghost.add(1)


def test_unknown_method_private_method_wrong_arguments(server):
    keeper = Keeper("k", to_dist=server.to_dist)
    agentnb.wait_created(keeper)  # its creation is work the server does: done before counting
    completed = completed_when_idle(server.connection())
    with pytest.raises(AttributeError, match="_secret.*private"):
        keeper._secret()
    assert server.connection().info().completed == completed  # refused before anything was sent
    with pytest.raises(AttributeError, match="no_such_method"):
        keeper.no_such_method()
    with pytest.raises(TypeError, match="positional argument"):
        keeper.add(1, 2, 3)
    assert keeper.add("fine") == 1


def test_unpicklable_argument_is_refused_before_sending(server):
    keeper = Keeper("k", to_dist=server.to_dist)
    agentnb.wait_created(keeper)  # its creation is work the server does: done before counting
    completed = completed_when_idle(server.connection())
    with pytest.raises(SerializationError, match=r"an argument of k\.add\(\) cannot be pickled"):
        keeper.add(threading.Lock())
    assert server.connection().info().completed == completed
    assert keeper.size() == 0


def test_unpicklable_result_is_an_error_and_the_agent_lives_on(server):
    keeper = Keeper("k", to_dist=server.to_dist)
    keeper.add("a")
    with pytest.raises(SerializationError, match=r"result of k\.bad_result cannot be pickled"):
        keeper.bad_result()
    assert keeper.add("b") == 2


def test_hundred_megabyte_argument_and_result(server):
    keeper = Keeper("k", to_dist=server.to_dist)
    data = bytes(range(256)) * (100 * 2**20 // 256)
    echoed = keeper.echo(data).result(timeout=120)
    assert echoed == data
    assert keeper.add("after") == 1
