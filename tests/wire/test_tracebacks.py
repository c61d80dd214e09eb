"""Remote frames rebuilt as traceback entries: what the caller shows, and what a server cannot make it do."""

from __future__ import annotations

import linecache
import sys
import traceback

import pytest

from agentnb.wire import codec
from agentnb.wire.tracebacks import MAX_FRAMES, RemoteFrame, rebuild, remote_frames

SOURCE = "def outer():\n    return inner(1) + 2\n\ndef inner(x):\n    y = x + 1\n    return {'a': 1}[y]\n"


@pytest.fixture
def remote_file(tmp_path) -> str:
    """A source file the 'server' ran, which this process can read too."""
    path = tmp_path / "agent_code.py"
    path.write_text(SOURCE)
    return str(path)


def _raised_with(tb) -> str:
    error = KeyError(2)
    try:
        raise error.with_traceback(tb)
    except KeyError:
        return traceback.format_exc()


def test_rebuilt_frames_read_as_the_remote_code_with_its_lines_and_carets(remote_file: str) -> None:
    namespace: dict = {}
    exec(compile(SOURCE, remote_file, "exec"), namespace)
    try:
        namespace["outer"]()
    except KeyError as exc:
        frames = remote_frames(exc.__traceback__)[1:]  # (the first is this test's own)
        local = traceback.format_exc()
    assert [(f.name, f.lineno, f.firstlineno) for f in frames] == [("outer", 2, 1), ("inner", 6, 4)]
    shown = _raised_with(rebuild(frames))
    # The rebuilt part is what the local traceback of the same code says, line for line.
    assert shown.split(f'File "{remote_file}"', 1)[1] == local.split(f'File "{remote_file}"', 1)[1]
    assert "return {'a': 1}[y]\n           ~~~~~~~~^^^" in shown


def test_agentnb_frames_are_left_out() -> None:
    def call_through_the_codec() -> None:
        codec.loads(b"not a pickle")

    try:
        call_through_the_codec()
    except Exception as exc:
        frames = remote_frames(exc.__traceback__)
    assert [f.name for f in frames] == ["test_agentnb_frames_are_left_out", "call_through_the_codec"]


@pytest.mark.parametrize("frame", [
    ("f.py", "huge", 10**12, 0, 5, 10**12, 1),        # a line far away, a body too long
    ("f.py", "cols", 3, -5, 10**9, 3, 3),            # columns out of range
    ("f.py", "lines", 3, 2, 1, -7, None),              # end before start
    ("f.py", "no positions", 7, None, None, None, None),
])
def test_any_frame_a_server_sends_is_rebuilt_cheaply_and_bounded(frame: tuple) -> None:
    tb = rebuild([frame])
    assert tb is not None and tb.tb_next is None
    assert tb.tb_frame.f_code.co_name == frame[1]
    assert 1 <= tb.tb_lineno <= 10_000_000


def test_malformed_frames_are_dropped_and_the_rest_kept(remote_file: str) -> None:
    good = RemoteFrame(remote_file, "inner", 6, 11, 22, 6, 4)
    tb = rebuild([("too", "short"), ("f.py", "x", "not a line"), good, object()])  # type: ignore[list-item]
    assert tb is not None and tb.tb_next is None and tb.tb_frame.f_code.co_name == "inner"
    assert rebuild([]) is None


def test_a_deep_recursion_keeps_its_innermost_frames() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1200))

    def down(n: int) -> None:
        if n == 0:
            raise RecursionError("bottom")
        down(n - 1)

    try:
        down(500)
    except RecursionError as exc:
        frames = remote_frames(exc.__traceback__)
    assert len(frames) == MAX_FRAMES and frames[-1].name == "down"


def test_nothing_the_server_sends_is_executed(tmp_path) -> None:
    marker = tmp_path / "ran"
    evil_name = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    tb = rebuild([RemoteFrame(evil_name, evil_name, 1, 0, 3, 1, 1)])
    linecache.clearcache()
    _raised_with(tb)
    assert not marker.exists()
    assert tb is not None and tb.tb_frame.f_code.co_name == evil_name
