"""Progress outside a notebook: the text line of a script, wait(), the watch setting, the ticker.

Every test talks to a real agent server process.
"""

from __future__ import annotations

import threading

import pytest
from agents_for_tests import Worker
from helpers_runtime import run_script, wait_for, write_script

import agentnb
from agentnb.progress import TICKER
from agentnb.rpc import rpc_object

SCRIPT = """
    import sys
    import time
    import agentnb

    class Flaky(agentnb.AgentBase):
        @agentnb.async_func
        def work(self, i):
            time.sleep(0.02)
            if i % 7 == 0:
                raise ValueError(f"call {i} fails")
            return i

    host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    agents = [Flaky(f"f{k}", to_dist={"host": host, "port": port, "token": token}) for k in range(4)]
    results = [agents[i % 4].work(i) for i in range(20)]
    p = agentnb.progress(results)
    values = agentnb.wait(results, show=True, return_exceptions=True)
    print("values:", [type(v).__name__ if isinstance(v, Exception) else v for v in values])
    print("progress:", p.finished, p.failed, p.done())
    try:
        agentnb.wait(results)
    except ValueError as exc:
        print("raised:", exc)
"""


@pytest.fixture
def watch_on() -> object:
    previous = agentnb.set_watch(True)
    yield
    agentnb.set_watch(previous)


def test_script_prints_a_text_progress_line(server, tmp_path) -> None:
    done = run_script(write_script(tmp_path, SCRIPT), server.host, str(server.port), server.token)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    final = [line for line in lines if "20/20 done" in line]
    # Two displays (progress() and wait(show=True)), each ending with one complete line.
    assert len(final) == 2 and all(line.startswith("100%|####################| 20/20 done, 3 failed, ")
                                   for line in final), done.stderr
    assert done.stderr.endswith("\n") and "Traceback" not in done.stderr, done.stderr
    assert "values: ['ValueError', 1, 2, 3, 4, 5, 6, 'ValueError'," in done.stdout
    assert "progress: 20 3 True" in done.stdout
    assert "raised: call 0 fails" in done.stdout


def test_wait_returns_values_in_the_shape_given(server) -> None:
    worker = Worker("w", to_dist=server.to_dist)
    assert agentnb.wait([worker.sleep_for(0.01), worker.sleep_for(0.02)]) == [0.01, 0.02]
    assert agentnb.wait(worker.sleep_for(x) for x in (0.03, 0.04)) == [0.03, 0.04]
    assert agentnb.wait({"a": worker.sleep_for(0.05), "b": worker.sleep_for(0.06)}) == {"a": 0.05, "b": 0.06}
    assert agentnb.wait(worker.sleep_for(0.07)) == 0.07
    assert agentnb.wait([]) == []


def test_wait_raises_the_first_failure_or_returns_it(server) -> None:
    worker = Worker("w", to_dist=server.to_dist)
    results = [worker.sleep_for(0.01), worker.fail_later("first"), worker.fail_later("second")]
    with pytest.raises(ValueError, match="first"):
        agentnb.wait(results)
    values = agentnb.wait(results, return_exceptions=True)
    assert values[0] == 0.01 and [str(v) for v in values[1:]] == ["first", "second"]


def test_wait_times_out_naming_how_many_finished(server) -> None:
    worker, other = Worker("w", to_dist=server.to_dist), Worker("o", to_dist=server.to_dist)
    held = worker.hold("gate-timeout", 1)
    try:
        with pytest.raises(TimeoutError, match="only 1 of 2 results were final after 0.2 s"):
            agentnb.wait([other.sleep_for(0.0), held], timeout=0.2)
    finally:
        other.release("gate-timeout")
    assert agentnb.wait([held], timeout=30) == [1]


def test_wait_refuses_what_is_not_an_async_result(server) -> None:
    worker = Worker("w", to_dist=server.to_dist)
    with pytest.raises(TypeError, match="item 1 is a 'int' object, not an AsyncResult"):
        agentnb.wait([worker.sleep_for(0), 3])
    with pytest.raises(TypeError, match="key 'x' is a 'str' object"):
        agentnb.progress({"x": "y"})
    with pytest.raises(TypeError, match="expected AsyncResults"):
        agentnb.wait(5)


def test_without_watch_only_final_states_are_reported(server) -> None:
    assert rpc_object.WATCH_STATES is False, "off by default in a script"
    res = Worker("w", to_dist=server.to_dist).sleep_for(0.01)
    res.result()
    assert [state for state, _ in res.history] == ["submitted", "done"]


def test_with_watch_each_state_is_pushed_with_its_time(server, watch_on) -> None:
    worker, other = Worker("w", to_dist=server.to_dist), Worker("o", to_dist=server.to_dist)
    seen: list[str] = []
    running = threading.Event()

    def record(res: agentnb.AsyncResult) -> None:
        seen.append(res.status)
        if res.status == "running":
            running.set()

    res = worker.hold("gate-watch", "v")
    res.add_status_callback(record)
    assert running.wait(30), f"no RUNNING pushed; seen {seen}"
    assert res.status == "running" and not res.done()
    other.release("gate-watch")  # the held agent runs one call at a time: another releases it
    assert res.result(timeout=30) == "v"
    wait_for(lambda: seen and seen[-1] == "done", what="the final callback")
    assert seen[-2:] == ["running", "done"], seen
    history = res.history
    assert [state for state, _ in history] == ["submitted", "queued", "running", "done"]
    assert history[-1][1] >= history[-2][1] >= history[1][1]


def test_progress_counts_states_and_the_ticker_stops_when_all_are_final(server, watch_on) -> None:
    worker, other = Worker("w", to_dist=server.to_dist), Worker("o", to_dist=server.to_dist)
    held = worker.hold("gate-progress", 0)
    failing = other.fail_later("x")
    p = agentnb.progress([held, failing, other.sleep_for(0.0)])
    wait_for(lambda: p.finished == 2 and p.count("running") == 1, what="2 finished, 1 running")
    assert (p.failed, p.done(), TICKER.running) == (1, False, True)
    assert "2/3 done, 1 failed, 1 running" in p.summary()
    other.release("gate-progress")
    assert p.wait(30) and p.finished == 3
    wait_for(lambda: not TICKER.running, what="the ticker thread to end")
    assert TICKER.live_views() == 0
    assert p.values(return_exceptions=True)[0] == 0
