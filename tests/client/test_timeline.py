"""The timeline of a run (``agentnb.timeline``): its rows and bars, live states, crowded rows, text.

The calls are real: agents on a real agent server process (a script's run is a
real script); only the drawing tests of fixed shapes use hand-made CallRecords.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from agents_for_tests import Worker
from helpers_runtime import run_script, wait_for, write_script

import agentnb
from agentnb import CallRecord, Timeline


@pytest.fixture
def watch_on() -> object:
    previous = agentnb.set_watch(True)
    yield
    agentnb.set_watch(previous)


def test_a_timeline_of_real_calls_has_a_row_per_agent_and_a_bar_per_call(server, watch_on) -> None:
    workers = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(3)]
    results = [workers[i % 3].step(i) for i in range(12)] + [workers[1].fail_later("broken")]
    line = agentnb.timeline(results, show=False)
    assert line.wait(60) and line.done()

    rows = line.rows
    assert list(rows) == ["W0", "W1", "W2"]
    assert [len(calls) for calls in rows.values()] == [4, 5, 4]
    assert line.counts() == {"queued": 0, "running": 0, "done": 12, "failed": 1, "cancelled": 0}
    for call in rows["W0"]:
        assert call.method == "step" and call.state == "done" and call.task_id and call.server
        assert call.queued <= call.started <= call.ended  # watched: queued and running times came from the server
    # An agent runs one call at a time: its bars follow one another.
    for before, after in zip(rows["W0"], rows["W0"][1:], strict=False):
        assert before.ended <= after.started + 1e-3
    (failed,) = [c for c in rows["W1"] if c.state == "failed"]
    assert failed.method == "fail_later" and failed.error_type.endswith("ValueError")

    svg = line.svg()
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "(live)" not in svg
    assert svg.count("<title>W0.step: done in ") == 4  # one hover text per bar
    assert "<title>W1.fail_later: failed (ValueError) in " in svg
    assert all(f">{name}<title>" in svg for name in ("W0", "W1", "W2"))  # the agents' labels
    assert all(f">{state}</text>" in svg for state in agentnb.STATES)  # the legend


def test_a_live_timeline_follows_queued_running_and_cancelled_calls(server, watch_on) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    opener = Worker("R", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    held = worker.hold(gate, "held")
    behind = worker.step(1)
    dropped = worker.step(2)
    line = agentnb.timeline([held, behind, dropped], show=False)

    wait_for(lambda: [c.state for c in line.calls][0] == "running", 30, "the held call to be running")
    assert dropped.cancel()
    wait_for(lambda: [c.state for c in line.calls] == ["running", "queued", "cancelled"], 30,
             "the timeline to show the cancelled call")
    assert not line.done() and not line.wait(0.01)
    version = line.version
    assert "(live)" in line.svg() and "W0.hold: running for " in line.svg()
    strip = line.text().splitlines()[1]
    assert strip.startswith("W0 |") and "=" in strip and strip.endswith("1 queued, 1 running, 1 cancelled"), strip

    opener.release(gate)
    assert line.wait(60)
    assert line.version > version
    assert [c.state for c in line.calls] == ["done", "done", "cancelled"]
    cancelled = line.calls[2]
    assert cancelled.started is None and cancelled.ended is not None
    assert "(live)" not in line.svg() and "W0.step: cancelled in " in line.svg()


def test_a_thousand_calls_are_drawn_as_counts_per_time_slice_and_quickly(server) -> None:
    workers = [Worker(f"W{i}", to_dist=server.to_dist) for i in range(5)]
    results = [workers[i % 5].step(i) for i in range(1000)]
    line = agentnb.timeline(results, show=False)
    assert line.wait(120)
    assert line.counts()["done"] == 1000

    # 200 calls a row do not fit 800 pixels one by one: each row is drawn as slices.
    assert line.dense_rows() == ["W0", "W1", "W2", "W3", "W4"]
    svg = line.svg()
    slices = re.findall(r"<title>W3, [0-9.]+-[0-9.]+ s: ([^<]*)</title>", svg)
    assert slices and all("done" in words or "queued" in words for words in slices)
    assert "<title>W3.step" not in svg  # no bar per call
    assert len(svg) < 400_000 and svg.count("<rect") < 5 * 200 * 3

    # Wider, a row of 200 calls gets a bar per call again.
    assert line.dense_rows(width=2000) == []
    assert line.svg(width=2000).count("<title>W3.step: done in ") == 200

    # Drawing is cheap (the issue asks for well under 100 ms on a quiet machine; this one is shared).
    draw = min(_seconds(line.svg) for _ in range(3))
    text = min(_seconds(line.text) for _ in range(3))
    assert draw < 1.0 and text < 1.0, (draw, text)

    # Ten agents of 100 calls each stay a bar per call, and are as cheap to draw.
    many = [Worker(f"M{i}", to_dist=server.to_dist) for i in range(10)]
    line10 = agentnb.timeline([many[i % 10].step(i) for i in range(1000)], show=False)
    assert line10.wait(120) and len(line10.rows) == 10 and line10.dense_rows() == []
    assert line10.svg().count("<title>M9.step: done in ") == 100
    assert min(_seconds(line10.svg) for _ in range(3)) < 1.0


def _seconds(draw) -> float:
    start = time.perf_counter()
    draw()
    return time.perf_counter() - start


T0 = 1_700_000_000.0


def test_the_text_drawing_puts_each_call_in_its_cells() -> None:
    calls = [
        CallRecord("W10", "work", "done", T0, T0 + 5, T0 + 10),
        CallRecord("W2", "work", "failed", T0 + 2, T0 + 4, T0 + 6, error_type="builtins.ValueError"),
        CallRecord("W2", "work", "cancelled", T0 + 6, None, T0 + 8),
    ]
    line = Timeline(calls)
    assert line.done() and list(line.rows) == ["W2", "W10"]  # W2 before W10
    lines = line.text(width=10).splitlines()
    assert lines[0] == "Timeline: 3 calls on 2 agents: 1 done, 1 failed, 1 cancelled; 10.0 s"
    assert lines[1] == "W2  |  ..xxx-- | 1 failed, 1 cancelled"
    assert lines[2] == "W10 |.....#####| 1 done"
    assert lines[3].split() == ["0", "s", "10.0", "s"]
    assert lines[4] == ". queued  = running  # done  x failed  - cancelled"
    svg = line.svg()
    assert "<title>W2.work: failed (ValueError) in 4.00 s (waited 2.00 s)</title>" in svg
    assert "<title>W2.work: cancelled in 2.00 s</title>" in svg
    assert str(Timeline([])) == "<Timeline 0 calls on 0 agents>" and Timeline([]).text() == \
        "Timeline: 0 calls on 0 agents"


def test_a_timeline_takes_only_calls() -> None:
    with pytest.raises(TypeError, match="item 1 is a 'int' object, not a CallRecord"):
        Timeline([CallRecord("W0", "m", "done", T0, None, T0 + 1), 5])
    with pytest.raises(TypeError, match="expected AsyncResults"):
        agentnb.timeline("W0")


SCRIPT = """
    import sys
    import time
    import agentnb

    class Flaky(agentnb.AgentBase):
        @agentnb.async_func
        def work(self, i):
            time.sleep(0.01)
            if i == 5:
                raise ValueError("five")
            return i

    host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    agentnb.set_watch(True)
    agents = [Flaky(f"f{k}", to_dist={"host": host, "port": port, "token": token}) for k in range(3)]
    line = agentnb.timeline([agents[i % 3].work(i) for i in range(9)])
    print("shown before the end:", line.done())
    print("waited:", line.wait(60))
"""


def test_a_script_prints_the_text_timeline_once_its_calls_are_final(server, tmp_path) -> None:
    done = run_script(write_script(tmp_path, SCRIPT), server.host, str(server.port), server.token)
    assert done.returncode == 0, done.stderr
    assert "waited: True" in done.stdout, done.stdout
    lines = done.stderr.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Timeline: ")))
    assert lines[start].startswith("Timeline: 9 calls on 3 agents: 8 done, 1 failed; "), done.stderr
    assert [line.split(" |")[0] for line in lines[start + 1:start + 4]] == ["f0", "f1", "f2"]
    assert lines[start + 3].endswith("| 2 done, 1 failed") and "x" in lines[start + 3]
    assert lines[start + 5].startswith(". queued")
    assert sum(line.startswith("Timeline: ") for line in lines) == 1  # printed once
