"""In a real kernel, an agent's error reads like a local one: the cell the agent's code came
from, its line and text; agentnb's frames hidden; the same short trace each time a failed
result is raised; a stopped server named, not a gRPC error."""

from __future__ import annotations

import re

import pytest
from kernel_fixtures import Kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")

CLASSES = '''from agentnb import RpcMeta, async_func

class Bomb(metaclass=RpcMeta):
    def explode(self, x):
        y = x + 1
        raise ValueError(f"boom {y}")

    @async_func
    def later(self, x):
        raise KeyError(x)

class Caller(metaclass=RpcMeta):
    def __init__(self, other):
        self.other = other

    def go(self):
        return self.other.explode(3) + 1
'''


def _trace(kernel: Kernel, code: str) -> tuple[str, str, str]:
    """Run a cell that must fail: its error's name, value and traceback as plain text."""
    result = kernel.run(code, expect_error=True)
    return result.ename, result.evalue, ANSI.sub("", result.traceback)


@pytest.fixture
def bombs(kernel: Kernel) -> Kernel:
    """A kernel with the extension, the classes defined in a cell, and agents."""
    kernel.run("%load_ext agentnb")
    kernel.run(CLASSES)
    kernel.run("b = Bomb().to_dist()\nc = Caller(b).to_dist()")
    return kernel


def _shows_line(kernel: Kernel, trace: str, line: int, function: str, text: str) -> bool:
    """Whether ``trace`` has the frame of ``function`` in the cell that defined the classes, at
    ``line``, with the arrow on ``text``."""
    found = re.search(rf"Cell In\[(\d+)\], line {line}, in {function}", trace)
    if found is None or re.search(rf"-+> {line} +{re.escape(text)}", trace[found.end():]) is None:
        return False
    return "class Bomb" in kernel.run(f"print(In[{found.group(1)}])").stdout  # that cell, by its number


def test_a_failing_call_shows_the_cell_and_line_of_the_agents_code(bombs: Kernel) -> None:
    kernel = bombs
    ename, evalue, trace = _trace(kernel, "b.explode(1)")
    assert (ename, evalue) == ("ValueError", "boom 2")  # type and message unchanged
    assert _shows_line(kernel, trace, 6, "explode", 'raise ValueError(f"boom {y}")'), trace
    assert "skipping hidden" in trace  # agentnb's frames, client side
    for internal in ("rpc_object.py", "future.py", "dispatch.py", "servicer.py", "<dynamic-code>"):
        assert internal not in trace, trace
    # The whole trace is still there for whoever wants it.
    full = kernel.run("import traceback\ntry:\n    b.explode(1)\nexcept ValueError as e:\n    err = e\n"
                      "print(''.join(traceback.format_exception(err)))\nprint(err.remote_traceback)").stdout
    assert "rpc_object.py" in full and "dispatch.py" in full


def test_a_call_through_another_agent_shows_both_agents_code(bombs: Kernel) -> None:
    kernel = bombs
    ename, _, trace = _trace(kernel, "c.go()")
    assert ename == "ValueError"
    assert _shows_line(kernel, trace, 17, "go", "return self.other.explode(3) + 1"), trace
    assert _shows_line(kernel, trace, 6, "explode", 'raise ValueError(f"boom {y}")'), trace
    assert trace.index("in go") < trace.index("in explode")


def test_a_failed_result_raised_again_shows_the_same_short_trace(bombs: Kernel) -> None:
    kernel = bombs
    kernel.run("r = b.later(2)\nr")  # shown as a widget first: drawing it must not add to the trace
    kernel.run("r.exception(timeout=60)")
    traces = [_trace(kernel, "r.result()")[2] for _ in range(3)]
    bodies = [re.sub(r"Cell In\[\d+\], line 1\n-+> 1 r.result\(\)", "CALLER", t) for t in traces]
    assert bodies[0] == bodies[1] == bodies[2], traces
    assert bodies[0].count("CALLER") == 1 and "_draw_outcome" not in bodies[0]
    assert _shows_line(kernel, traces[0], 10, "later", "raise KeyError(x)"), traces[0]


def test_using_a_proxy_after_its_server_was_stopped_names_the_server(kernel: Kernel) -> None:
    kernel.run("%load_ext agentnb")
    kernel.run("%agent_server start --name lab")
    kernel.run(CLASSES)
    kernel.run("b = Bomb().to_dist()\nr = b.later(1)\nr.exception(timeout=60)")
    kernel.run("%agent_server stop lab")
    for use in ("b.explode(1)", "b.later(1)"):
        ename, evalue, trace = _trace(kernel, use)
        assert ename == "ServerUnavailable", trace
        assert "agent server 'lab' at " in evalue and "was stopped" in evalue, evalue
        assert "closed channel" not in trace and "grpc" not in trace, trace
