"""@concurrent: a method that may run beside the agent's current call (the opt-in out of the mailbox)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers_runtime import wait_for

from agentnb import AgentBase, DeadlockError, RpcMeta, async_func, concurrent
from agentnb._proto import agentnb_pb2 as pb
from agentnb.rpc.async_result import AsyncResult
from agentnb.rpc.methods import class_methods, concurrent_methods
from agentnb.wire import codec

# Seconds a gated call waits at most, so that a broken test fails instead of hanging a worker.
GATE_LIMIT = 30.0


class Crawler(AgentBase):
    """A long call (``crawl``) that waits on a gate, and quick reads beside it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.pages = 0
        self._gate = threading.Event()

    @async_func
    def crawl(self, pages: int) -> int:
        for _ in range(pages):
            self.pages += 1
        if not self._gate.wait(GATE_LIMIT):  # held until release(), itself a concurrent call
            raise TimeoutError("nobody released the crawl")
        return self.pages

    @concurrent
    def progress(self) -> int:
        return self.pages

    @concurrent
    def release(self) -> None:
        self._gate.set()

    @async_func
    def pages_in_order(self) -> int:
        """The same read, unmarked: it waits for its turn."""
        return self.pages

    @concurrent
    @async_func
    def progress_later(self) -> int:
        return self.pages


def test_a_concurrent_read_answers_while_a_long_call_of_the_same_agent_runs(start_server) -> None:
    server = start_server("--capacity", "4")
    crawler = Crawler("c", to_dist=server.to_dist)
    crawling = crawler.crawl(5)
    in_order = crawler.pages_in_order()
    try:
        # The crawl holds the agent (until release()); the concurrent read still answers, with its progress.
        wait_for(lambda: crawler.progress() == 5, what="the crawl's progress, read beside it")
        assert crawler.progress_later().result(timeout=GATE_LIMIT) == 5
        assert not crawling.done() and not in_order.done()  # the unmarked read waits behind the crawl
    finally:
        crawler.release()
    assert crawling.result(timeout=GATE_LIMIT) == 5
    assert in_order.result(timeout=GATE_LIMIT) == 5


class Pinger(AgentBase):
    """Calls another agent synchronously, which calls back."""

    def ask(self, other) -> str:
        return other.call_back(self)

    @concurrent
    def status(self) -> str:
        return f"{self.name} is waiting"

    def busy_status(self) -> str:
        return f"{self.name} answers in turn"


class Ponger(AgentBase):
    def call_back(self, caller) -> str:
        return caller.status()

    def call_back_in_turn(self, caller) -> str:
        return caller.busy_status()


def test_a_concurrent_method_may_be_called_back_by_an_agent_it_waits_on(start_server) -> None:
    server = start_server("--capacity", "4")
    ping, pong = Pinger("ping", to_dist=server.to_dist), Ponger("pong", to_dist=server.to_dist)
    # ping waits synchronously on pong, which calls ping back: no deadlock for a concurrent method.
    assert ping.ask(pong) == "ping is waiting"


def test_an_unmarked_call_back_is_still_a_deadlock_error(start_server) -> None:
    class Asker(Pinger):
        def ask(self, other) -> str:
            return other.call_back_in_turn(self)

    server = start_server("--capacity", "4")
    ping, pong = Asker("ping", to_dist=server.to_dist), Ponger("pong", to_dist=server.to_dist)
    with pytest.raises(DeadlockError, match="waiting synchronously"):
        ping.ask(pong)


class SlowStart(metaclass=RpcMeta):
    def __init__(self) -> None:
        time.sleep(0.3)  # a slow constructor: a concurrent call sent meanwhile must wait for it
        self.ready = True

    @concurrent
    def is_ready(self) -> bool:
        return self.ready


def test_a_concurrent_call_sent_during_creation_waits_for_the_object(server) -> None:
    obj = SlowStart(to_dist=server.to_dist)
    # The proxy's first use waits for the creation by itself; a raw submission does not, so send one.
    task = obj._conn.new_task_id()
    future = obj._conn.submit(pb.CALL, obj.agent_id, "is_ready", codec.dumps(((), {})), task_id=task)
    assert AsyncResult(obj._conn, task, future).result(timeout=GATE_LIMIT) is True


def test_the_mark_belongs_to_the_method_that_runs() -> None:
    class Base(metaclass=RpcMeta):
        @concurrent
        def peek(self) -> int:
            return 1

        @concurrent
        @async_func
        def later(self) -> int:
            return 2

        def plain(self) -> int:
            return 3

    class Child(Base):
        def peek(self) -> int:  # overridden without the mark: back in the queue
            return 4

    assert concurrent_methods(Base) == {"peek", "later"}
    assert concurrent_methods(Child) == {"later"}
    assert class_methods(Base) == {"peek": "sync", "later": "async", "plain": "sync"}  # kinds unchanged
    assert Base().peek() == 1  # a local object is untouched
