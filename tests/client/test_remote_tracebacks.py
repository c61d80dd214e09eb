"""An agent's error, raised in its caller, reads like a local one: the agent's own frames at
their place in the caller's source, agentnb's frames hidden where the tool allows, the same
short trace each time a failed result is raised; and a stopped server is named, not a gRPC error."""

from __future__ import annotations

import subprocess
import sys
import traceback

import pytest
from agents_for_tests import Worker
from helpers_runtime import run_script, script_env, write_script

import agentnb
from agentnb import RpcMeta, ServerUnavailable, async_func


def test_a_script_shows_the_agents_line_with_its_text_and_carets(tmp_path) -> None:
    path = write_script(tmp_path, """
        from agentnb import RpcMeta

        class Bomb(metaclass=RpcMeta):
            def explode(self, x):
                y = x + 1
                return {"a": 1}[y]

        Bomb().to_dist().explode(1)
    """)
    done = run_script(path)
    assert done.returncode == 1
    err = done.stderr
    shown = f'File "{path}", line 7, in explode\n    return {{"a": 1}}[y]\n           ~~~~~~~~^^^\nKeyError: 2'
    assert shown in err, err
    assert "<dynamic-code>" not in err and "dispatch.py" not in err  # the server's own frames stay there
    assert "(raised in Bomb " in err  # which agent, on which server


def test_pytest_hides_agentnb_frames(tmp_path) -> None:
    path = write_script(tmp_path, """
        from agentnb import RpcMeta

        def test_agent_fails():
            class Bomb(metaclass=RpcMeta):
                def explode(self, x):
                    raise ValueError(f"boom {x}")

            Bomb().to_dist().explode(1)
    """, name="test_remote_failure.py")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", path], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120, env=script_env(), stdin=subprocess.DEVNULL)
    out = done.stdout
    assert done.returncode == 1 and "ValueError: boom 1" in out, out
    assert 'raise ValueError(f"boom {x}")' in out, out  # the agent's frame, with its source
    assert "_invoke" not in out and "decode_final" not in out, out  # agentnb's own frames are hidden


def test_a_failed_result_raises_the_same_short_trace_each_time(server) -> None:
    result = Worker("W0", to_dist=server.to_dist).fail_later("late")

    def trace() -> str:
        try:
            result.result(timeout=60)
        except ValueError:
            return traceback.format_exc()
        raise AssertionError("no error")

    first, second, third = trace(), trace(), trace()
    assert first == second == third
    assert first.count("in trace") == 1 and "in fail_later" in first
    assert result.exception() is not None and "fail_later" in "".join(traceback.format_exception(result.exception()))
    assert trace() == first  # exception() did not change what result() raises


def test_the_whole_trace_stays_reachable(server) -> None:
    worker = Worker("W0", to_dist=server.to_dist)
    with pytest.raises(Exception) as info:
        worker.fail("bad", code=1)
    assert "dispatch.py" in info.value.remote_traceback  # the server's own frames, as text
    local = "".join(traceback.format_exception(info.value))
    assert "rpc_object.py" in local and "in fail" in local  # this process's frames, and the agent's


class Steady(metaclass=RpcMeta):
    def ping(self) -> str:
        return "pong"

    @async_func
    def later(self) -> str:
        return "later"


def test_a_stopped_server_is_named_by_every_later_use(daemons: None) -> None:
    agentnb.start_server("lab")
    steady = Steady().to_dist()
    earlier = steady.later()
    assert steady.ping() == "pong" and earlier.result(timeout=60) == "later"
    agentnb.stop_server("lab")
    for use in (steady.ping, steady.later):
        with pytest.raises(ServerUnavailable, match=r"agent server 'lab' at .* was stopped"):
            use()
    assert earlier.result() == "later"  # what arrived before stays
