"""A user's program, typed: tests/layout/test_types.py has mypy (--strict) check it against agentnb
as a user's checker finds it (through its py.typed). It is never run.

``assert_type`` states what the checker must see. A proxy is seen as an object of its agent's
class (what ``to_dist`` returns); a call of an ``@async_func`` method as its value, which the
AsyncResult it returns stands in for (attributes and items wait by themselves); a ``cast``
says so where the AsyncResult's own methods are wanted (the README's "Types").
"""

from __future__ import annotations

from typing import Any, assert_type, cast

import agentnb
from agentnb import AgentBase, AsyncResult, Msg, RpcMeta, RpcObject, ServerPool, async_func


class Greeter(AgentBase):
    def __init__(self, name: str, greeting: str = "hello") -> None:
        super().__init__(name)
        self.greeting = greeting

    def reply(self, x: Msg | None = None) -> Msg:  # asynchronous on a proxy, as AgentBase's
        return Msg(self.name, self.greeting, role="assistant")

    def count(self) -> int:
        return 1

    @async_func
    def slow_count(self, n: int) -> int:
        return n


class Counter(metaclass=RpcMeta):  # not an agent: any class with RpcMeta
    def add(self, n: int) -> int:
        return n


def distribute() -> None:
    local = Greeter("g")
    remote = local.to_dist()
    assert_type(remote, Greeter)
    assert_type(local.to_dist(host="localhost", port=12345), Greeter)
    assert_type(remote.count(), int)
    assert_type(remote.reply(Msg("user", "hi", role="user")), Msg)
    assert_type(remote(Msg("user", "hi", role="user")), Msg)
    assert_type(remote.slow_count(3), int)
    assert_type(agentnb.to_dist(Greeter, "g2", greeting="hi"), Greeter)
    assert_type(agentnb.to_dist(local, async_methods=["count"]), Greeter)
    assert_type(agentnb.to_dist(Counter), Counter)
    agentnb.wait_created(remote, local.to_dist())
    assert_type(agentnb.get_agent("g"), RpcObject)
    assert_type(agentnb.list_agents(), list[RpcObject])


def results(remote: Greeter) -> None:
    res = cast("AsyncResult[int]", remote.slow_count(3))
    assert_type(res.result(), int)
    assert_type(res.result(timeout=1.0), int)
    assert_type(res.done(), bool)
    assert_type(res.status, str)
    assert_type(res.exception(), BaseException | None)
    res.add_done_callback(lambda r: print(r.result() + 1))
    pending: list[AsyncResult[int]] = [res]
    agentnb.cancel(pending)
    agentnb.wait(pending, timeout=5.0)
    assert_type(agentnb.new_results(), list[AsyncResult[Any]])


async def awaited(res: AsyncResult[Msg]) -> str:
    msg = await res
    assert_type(msg, Msg)
    return str(msg.content)


def servers() -> None:
    agentnb.init()
    with agentnb.start_pool(replicas=2) as pool:
        assert_type(pool, ServerPool)
        Greeter("g").to_dist(pool=pool)
