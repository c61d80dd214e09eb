"""A server's history of recent calls (GetCalls): what a timeline of a server is drawn from.

Every test talks to a real agent server process (or a daemon started by name).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from agents_for_tests import Counter, Worker
from helpers_runtime import wait_for

import agentnb
from agentnb.server.call_history import HISTORY_SIZE


def _calls(server, **kwargs) -> list:
    return list(server.connection().calls(**kwargs).calls)


def _find(calls: list, agent: str, method: str) -> list:
    return [c for c in calls if c.agent_name == agent and c.method == method]


def test_get_calls_reports_each_call_with_its_agent_method_state_and_times(server) -> None:
    w0 = Worker("W0", to_dist=server.to_dist)
    w1 = Worker("W1", to_dist=server.to_dist)
    opener = Worker("R", to_dist=server.to_dist)
    assert w0.step(1).result(timeout=60)[0] == 1
    failing = w0.fail_later("nope")
    assert w0.echo("sync") == "sync"  # a synchronous call (no task id)
    with pytest.raises(ValueError, match="nope"):
        failing.result(timeout=60)
    gate = uuid.uuid4().hex
    held = w1.hold(gate, "held")
    behind = w1.step(2)
    dropped = w1.step(3)

    wait_for(lambda: [c.state for c in _find(_calls(server), "W1", "hold")] == ["running"], 30,
             "the held call to be running on the server")
    assert dropped.cancel()
    calls = _calls(server)

    (step,) = _find(calls, "W0", "step")
    assert step.state == "done" and step.task_id and step.agent_id
    assert 0 < step.queued <= step.started <= step.ended
    (failed,) = _find(calls, "W0", "fail_later")
    assert failed.state == "failed" and failed.error_type == "builtins.ValueError"
    (echo,) = _find(calls, "W0", "echo")
    assert echo.state == "done" and echo.task_id == ""
    (running,) = _find(calls, "W1", "hold")
    assert running.started > 0 and running.ended == 0
    queued = {c.task_id: c for c in _find(calls, "W1", "step")}
    assert queued[behind.task_id].state == "queued" and queued[behind.task_id].started == 0
    cancelled = queued[dropped.task_id]
    assert cancelled.state == "cancelled" and cancelled.started == 0 and cancelled.ended >= cancelled.queued
    # Each agent's creation is a call too, and the names are the agents'.
    assert {c.agent_name for c in _find(calls, "W0", "__init__") + _find(calls, "R", "__init__")} == {"W0", "R"}

    opener.release(gate)
    assert held.result(timeout=60) == "held" and behind.result(timeout=60)[0] == 2
    w1_calls = sorted((c.method, c.state) for c in _calls(server) if c.agent_name == "W1")
    assert w1_calls == [("__init__", "done"), ("hold", "done"), ("step", "cancelled"), ("step", "done")]


def test_the_history_is_bounded_and_says_how_many_calls_it_forgot(server) -> None:
    counters = [Counter(to_dist=server.to_dist) for _ in range(4)]
    total = HISTORY_SIZE + 200
    results = [counters[i % 4].add_later(1) for i in range(total)]
    agentnb.wait(results, timeout=300)
    listing = server.connection().calls()
    # Every call ended: the history holds the last HISTORY_SIZE of them (the 4 creations came first).
    assert len(listing.calls) == HISTORY_SIZE
    assert listing.forgotten == total + 4 - HISTORY_SIZE
    assert {c.state for c in listing.calls} == {"done"}
    # The oldest calls were forgotten, the latest kept (each agent runs its calls in order).
    kept = {c.task_id for c in listing.calls}
    assert results[0].task_id not in kept and all(r.task_id in kept for r in results[-20:])
    assert listing.now >= max(c.ended for c in listing.calls)

    recent = server.connection().calls(limit=50).calls
    assert len(recent) == 50 and [c.task_id for c in recent] == [c.task_id for c in listing.calls[-50:]]


@pytest.fixture
def daemons() -> Iterator[None]:
    """Daemons started by the test end with it."""
    try:
        yield
    finally:
        agentnb.stop_server(all=True, grace=2)


def test_server_calls_of_a_daemon_by_name_and_its_timeline(daemons: None) -> None:
    lab = agentnb.start_server("lab", capacity=4, use=False)
    workers = [Worker(f"W{i}", to_dist=lab) for i in range(2)]
    results = [workers[i % 2].step(i) for i in range(6)] + [workers[0].fail_later("late")]
    agentnb.wait(results, timeout=60, return_exceptions=True)

    calls = agentnb.server_calls("lab")
    mine = [c for c in calls if c.method in ("step", "fail_later")]
    assert len(mine) == 7 and all(c.server == "lab" for c in mine)
    assert [c.queued for c in calls] == sorted(c.queued for c in calls)  # oldest first
    (failed,) = [c for c in mine if c.state == "failed"]
    assert failed.agent == "W0" and failed.error_type == "builtins.ValueError"

    line = agentnb.timeline(calls, show=False)
    assert list(line.rows) == ["W0", "W1"]
    assert [c.method for c in line.rows["W1"]] == ["__init__", "step", "step", "step"]
    assert line.counts()["failed"] == 1 and line.done()
    assert len(agentnb.server_calls("lab", limit=3)) == 3
