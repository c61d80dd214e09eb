"""Cancelling many calls at once (``agentnb.cancel``), and remembering the calls a process
makes (``agentnb.watch_results``), which a notebook uses to cancel an interrupted cell's calls.

Every test talks to a real agent server process.
"""

from __future__ import annotations

import pytest
from agents_for_tests import Worker
from helpers_runtime import wait_for

import agentnb
from agentnb import TaskCancelled


@pytest.fixture
def watch_on() -> object:
    previous = agentnb.set_watch(True)
    yield
    agentnb.set_watch(previous)


def test_cancel_takes_back_the_queued_calls_and_leaves_the_running_one(server, watch_on) -> None:
    worker, other = Worker("w", to_dist=server.to_dist), Worker("o", to_dist=server.to_dist)
    running = worker.hold("gate-cancel", "first")
    queued = [worker.sleep_for(0.0) for _ in range(4)]  # one agent runs one call at a time
    wait_for(lambda: running.status == "running", what="the first call to run")

    cancelled = agentnb.cancel({"held": running, **{f"q{i}": res for i, res in enumerate(queued)}})

    assert cancelled == queued
    assert [res.status for res in queued] == ["cancelled"] * 4
    with pytest.raises(TaskCancelled):
        queued[0].result(timeout=5)
    assert running.status == "running"
    assert agentnb.cancel(agentnb.Progress([running, *queued])) == []  # nothing left to cancel
    other.release("gate-cancel")
    assert running.result(timeout=30) == "first"
    assert worker.sleep_for(0.0).result(timeout=30) == 0.0  # the agent goes on after its cancelled calls
    assert running.cancel() is False


def test_watch_results_remembers_the_calls_made_until_taken(server) -> None:
    worker = Worker("w", to_dist=server.to_dist)
    assert agentnb.new_results() == []  # not watching: nothing kept
    worker.sleep_for(0.0).result(timeout=30)
    assert agentnb.new_results() == []
    agentnb.watch_results(True)
    try:
        made = [worker.sleep_for(0.0) for _ in range(3)]
        assert agentnb.new_results() == made
        assert agentnb.new_results() == []  # taken
        later = worker.sleep_for(0.0)
        assert agentnb.new_results() == [later]
    finally:
        agentnb.watch_results(False)
    worker.sleep_for(0.0).result(timeout=30)
    assert agentnb.new_results() == []
