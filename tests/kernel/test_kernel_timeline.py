"""The timeline in a real kernel: ``agentnb.timeline(results)`` and ``%agent_server timeline NAME``.

Each test runs cells in a real IPython kernel (jupyter_client) and replays the
kernel's widget messages (``comm_open``, ``comm_msg`` updates) into the models
a browser would hold, then reads the SVG a user would see.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from kernel_fixtures import Kernel
from widget_frontend import WIDGET_MIME, Frontend, run_watching

import agentnb

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
            return i
""")


def one_timeline_showing(text: str) -> Callable[[Frontend], bool]:
    def check(frontend: Frontend) -> bool:
        shown = list(frontend.timelines().values())
        return len(shown) == 1 and text in shown[0] and "(live)" not in shown[0]
    return check


def test_a_timeline_of_results_is_a_live_widget_until_its_calls_end(kernel: Kernel) -> None:
    kernel.run(SETUP + "workers = [Worker(f'w{k}', to_dist=True) for k in range(3)]\n"
                       "[w.work(1).result() for w in workers]")
    code = "res = [workers[i % 3].work(i, 0.3) for i in range(9)]\ntl = agentnb.timeline(res)\ntl"
    frontend = run_watching(kernel, code, one_timeline_showing("9 calls on 3 agents: 7 done, 2 failed"),
                            "the timeline to show 9 final calls")

    # Drawn once (although the timeline is also the cell's value), as a widget with a text repr.
    (output,) = frontend.outputs
    assert WIDGET_MIME in output and output["text/plain"].startswith("<Timeline 9 calls on 3 agents")
    ((model_id, svg),) = frontend.timelines().items()
    assert output[WIDGET_MIME]["model_id"] == model_id
    # First drawn while the calls ran (three of 0.3 s each per agent), then redrawn until the end.
    drawn = [value for value in frontend.values[model_id] if value]
    assert "(live)" in drawn[0] and "(live)" not in drawn[-1] and len(drawn) >= 2
    assert svg.startswith("<svg") and all(f">w{k}<title>" in svg for k in range(3))
    assert "<title>w0.work: failed (ValueError) in " in svg and svg.count(": done in ") == 7


def test_agent_server_timeline_draws_a_daemons_recent_calls(kernel: Kernel) -> None:
    kernel.run(SETUP + "%agent_server start --name tl\n"
                       "workers = [Worker(f'w{k}', to_dist=True) for k in range(2)]\n"
                       "values = agentnb.wait([workers[i % 2].work(i) for i in range(1, 9)], return_exceptions=True)")
    frontend = run_watching(kernel, "%agent_server timeline tl", one_timeline_showing("w1.work: failed (ValueError)"),
                            "the daemon's timeline")
    (output,) = frontend.outputs
    assert WIDGET_MIME in output and output["text/plain"].startswith("<Timeline 10 calls on 2 agents")
    (svg,) = frontend.timelines().values()
    assert svg.count("<title>w0.work: done in ") == 4 and svg.count("<title>w1.work: done in ") == 3
    assert svg.count(".__init__: done in ") == 2  # the agents' creations ran on the daemon too

    wrong = kernel.run("%agent_server timeline nothere", expect_error=True)
    assert wrong.ename == "DaemonError" and "no agent server named 'nothere'" in wrong.evalue


def test_the_timeline_uses_the_colours_of_the_result_widgets() -> None:
    from kernel_ext.widgets import STATUS_COLOURS

    assert agentnb.STATE_COLOURS == STATUS_COLOURS
