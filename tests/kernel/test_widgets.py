"""Live widgets in a real kernel: what the frontend receives on the comm channel.

Each test runs cells in a real IPython kernel (jupyter_client) and replays the
kernel's ``comm_open`` / ``comm_msg`` messages into the widget models a
browser would hold, then reads the text a user would see in them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from helpers_runtime import wait_for
from kernel_fixtures import Kernel
from widget_frontend import TIMEOUT, WIDGET_MIME, Frontend, run_watching

# Agents defined in a cell (they travel by value to the kernel's child server).
SETUP = textwrap.dedent("""
    %load_ext agentnb
    import time
    import agentnb

    class Worker(agentnb.AgentBase):
        @agentnb.async_func
        def work(self, i, seconds=0.0):
            time.sleep(seconds)
            if i % 7 == 0:
                raise ValueError(f"call {i} fails")
            return i * i

        @agentnb.async_func
        def hold(self, gate):
            import os
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:  # the test opens the gate
                time.sleep(0.01)
            return "released"

    workers = [Worker(f"w{k}", to_dist=True) for k in range(3)]
    [w.work(1).result() for w in workers]  # the child server is up and every agent answers
""")


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


@pytest.fixture
def workers(kernel: Kernel) -> Kernel:
    """A kernel with the extension loaded and three agents on its child server."""
    kernel.run(SETUP)
    return kernel


def progress_reached(total: int, failed: int) -> Callable[[Frontend], bool]:
    def check(frontend: Frontend) -> bool:
        boxes = frontend.boxes("agentnb-progress")
        expected = f"{total}/{total} done, {failed} failed" if failed else f"{total}/{total} done,"
        return bool(boxes) and expected in frontend.texts(boxes[-1])
    return check


def test_progress_bar_fills_without_blocking_the_cell(workers: Kernel) -> None:
    code = "results = [workers[i % 3].work(i, 0.15) for i in range(21)]\np = agentnb.progress(results)\np"
    frontend = run_watching(workers, code, progress_reached(21, 3), "the bar to reach 21/21 with 3 failed")

    box = only(frontend.boxes("agentnb-progress"))  # drawn once, although the cell's value is the Progress too
    bar = only([frontend.child(ref) for ref in box["children"] if frontend.child(ref)["_model_name"]
                == "IntProgressModel"])
    assert (bar["value"], bar["max"], bar["bar_style"]) == (21, 21, "danger")  # red: some failed
    assert frontend.texts(box).startswith("100% | 21/21 done, 3 failed, "), frontend.texts(box)
    # 7 calls of 0.15 s per agent: the cell ended, and the bar was drawn, long before the last one.
    first_label = [frontend.first_states[ref.removeprefix("IPY_MODEL_")] for ref in box["children"]]
    assert not any("21/21" in str(state.get("value")) for state in first_label), first_label
    # The cell showed the widget (with a text repr beside it), and nothing raised.
    output = only(frontend.outputs)
    assert WIDGET_MIME in output and output["text/plain"].startswith("<Progress ")

    # Final: the view left the ticker, whose thread ended.
    wait_for(lambda: "0 False" in workers.run("from agentnb.progress import TICKER\n"
                                                "print(TICKER.live_views(), TICKER.running)").stdout,
               TIMEOUT, "the ticker to drop the finished view and stop")


def test_async_result_renders_as_a_live_widget_with_a_text_repr(workers: Kernel) -> None:
    frontend = run_watching(workers, "res = workers[0].work(3, 0.3)\nres",
                            lambda f: "done" in f.texts(only(f.boxes("agentnb-result"))), "the result to be done")
    output = only(frontend.outputs)
    assert output["text/plain"].startswith("<AsyncResult w0.work ")
    box = only(frontend.boxes("agentnb-result"))
    assert output[WIDGET_MIME]["model_id"] in frontend.models
    text = frontend.texts(box)
    assert text.startswith("done w0.work() on child server of this kernel") and text.endswith(" s | 9"), text
    # Watching was turned on by the extension: the call reported each state, with its time.
    history = workers.run("print([state for state, _ in res.history], res.status)").stdout
    assert history.strip() == "['submitted', 'queued', 'running', 'done'] done"


def test_failed_result_shows_the_error_and_its_remote_traceback(workers: Kernel) -> None:
    frontend = run_watching(workers, "res = workers[1].work(7)\ndisplay(res)",
                            lambda f: "failed" in f.texts(only(f.boxes("agentnb-result"))), "the result to fail")
    text = frontend.texts(only(frontend.boxes("agentnb-result")))
    assert "ValueError" in text and "call 7 fails" in text, text
    assert "Traceback" in text and "in work" in text, text  # the agent's frames, in the collapsed section
    accordion = only([m for m in frontend.models.values() if m["_model_name"] == "AccordionModel"])
    assert accordion["selected_index"] is None, "the traceback starts collapsed"


def test_wait_with_show_blocks_and_returns_the_values(workers: Kernel) -> None:
    code = textwrap.dedent("""
        values = agentnb.wait({f"k{i}": workers[i % 3].work(i, 0.05) for i in range(1, 7)}, show=True)
        print(values)
        print(workers[2].work(5).wait_interactive())
    """)
    frontend = run_watching(workers, code, progress_reached(6, 0), "the bar to reach 6/6")
    assert {"k1": 1, "k6": 36}.items() <= eval(workers.run("print(values)").stdout).items()
    assert len(frontend.boxes("agentnb-result")) == 1  # wait_interactive shows the one result
    box = only(frontend.boxes("agentnb-progress"))
    assert "6/6 done" in frontend.texts(box)


def test_wait_interactive_shows_the_status_and_the_value_once(workers: Kernel) -> None:
    frontend = run_watching(workers, "workers[2].work(5, 0.2).wait_interactive()",
                            lambda f: f.texts(only(f.boxes("agentnb-result"))).startswith("done"), "the call to end")
    status, value = frontend.outputs  # the live status while it waited, then the cell's value
    assert value == {"text/plain": "25"}
    box = only(frontend.boxes("agentnb-result"))
    assert status[WIDGET_MIME]["model_id"] in frontend.models
    text = frontend.texts(box)
    assert text.startswith("done w2.work()") and " | " not in text, f"the widget shows the value too: {text}"

    failed = workers.run("workers[0].work(7).wait_interactive()", expect_error=True)
    assert failed.ename == "ValueError" and "call 7 fails" in failed.evalue  # raised, as result() raises it


def test_progress_bar_shows_a_failure_as_it_happens(workers: Kernel, tmp_path) -> None:
    gate = tmp_path / "gate"
    code = (f"results = [workers[0].work(7), workers[1].hold({str(gate)!r}), workers[2].work(2)]\n"
            "p = agentnb.progress(results)")

    def failed_while_running(frontend: Frontend) -> bool:
        boxes = frontend.boxes("agentnb-progress")
        # (the held call is running, or, on a busy machine, still queued: either way not final)
        return bool(boxes) and frontend.texts(boxes[0]).startswith("66% | 2/3 done, 1 failed")

    frontend = run_watching(workers, code, failed_while_running, "the bar to count the failure while a call runs")
    box = only(frontend.boxes("agentnb-progress"))
    bar, label = (frontend.child(box["children"][i]) for i in (1, 2))
    assert (bar["value"], bar["max"], bar["bar_style"]) == (2, 3, "danger"), bar  # red before the end
    assert '<b style="color:#c62828">1 failed</b>' in label["value"], label  # the count in red
    assert workers.run("print(p.done())").stdout.strip() == "False"

    gate.touch()
    wait_for(lambda: workers.run("print(p.done())").stdout.strip() == "True", TIMEOUT, "the held call to end")
    # A view built now (as the display's next redraw does) shows the end; in text, the percentage too.
    shown = workers.run(textwrap.dedent("""
        from kernel_ext.widgets import ProgressView
        view = ProgressView(p)
        print(view.bar.bar_style, view.percent.value, view.bar.value)
        print(p.bar(10), p.summary())
    """)).stdout.splitlines()
    assert shown[0] == "danger 100% 3"
    assert shown[1].startswith("100%|##########| 3/3 done, 1 failed, "), shown


def test_progress_bar_turns_green_when_all_are_done(workers: Kernel) -> None:
    code = "p = agentnb.progress([workers[i].work(i + 1, 0.1) for i in range(3)])"
    frontend = run_watching(workers, code, progress_reached(3, 0), "the bar to reach 3/3")
    box = only(frontend.boxes("agentnb-progress"))
    assert frontend.child(box["children"][1])["bar_style"] == "success"
    assert frontend.texts(box).startswith("100% | 3/3 done, ")
    assert "color" not in frontend.child(box["children"][2])["value"]  # nothing failed: nothing in red


def test_wait_raises_the_first_failure(workers: Kernel) -> None:
    result = workers.run("agentnb.wait([workers[0].work(1), workers[1].work(14)], show=True)", expect_error=True)
    assert result.ename == "ValueError" and "call 14 fails" in result.evalue


def test_without_ipywidgets_the_kernel_prints_a_text_line(kernel: Kernel) -> None:
    # ipywidgets made unimportable (a broken install): the extension loads without
    # widgets, and the same calls print a progress line and return their values.
    kernel.run("import sys\nsys.modules['ipywidgets'] = None")
    kernel.run(SETUP)
    result = kernel.run("res = [workers[i % 3].work(i) for i in range(1, 9)]\n"
                        "values = agentnb.wait(res, show=True, return_exceptions=True)\n"
                        "print([type(v).__name__ for v in values].count('ValueError'))\nres[0]")
    assert "100%|####################| 8/8 done, 1 failed" in result.stderr, result.stderr
    assert result.stdout.strip() == "1"
    assert [set(output) for output in result.outputs] == [{"text/plain"}]
    assert result.outputs[0]["text/plain"].startswith("<AsyncResult w1.work done value=1 ")
