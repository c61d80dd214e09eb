"""Child mode: servers started as ``python -m agentnb.server`` subprocesses,
reused, and gone when the main process ends (normally, by an exception, or killed)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
from agents_for_tests import Worker
from helpers_runtime import Script, run_script, wait_pid_gone, write_script

from agentnb.runtime_dir import pid_alive

# A script that distributes agents in child mode and prints the child server's pid.
PRELUDE = """
    import os, sys, time
    from agentnb import AgentBase, Msg, async_func

    class Echo(AgentBase):
        def reply(self, x=None):
            return Msg(self.name, content=x.content)

        @async_func
        def sleep_for(self, seconds):
            time.sleep(seconds)

        def pid(self):
            return os.getpid()

    agents = [Echo(f"W{i}", to_dist=True) for i in range(3)]
    print("child", agents[0].pid(), flush=True)
"""


@pytest.fixture
def reap():
    """Pids a test saw; any still alive at its end are killed (the test has failed then)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _child_pid(line: str) -> int:
    word, pid = line.split()
    assert word == "child"
    return int(pid)


@contextlib.contextmanager
def _started(path, reap: list[int]) -> Iterator[tuple[Script, int]]:
    """Run the script at ``path`` until it printed its child server's pid; kill it at the end."""
    script = Script(path)
    try:
        pid = _child_pid(script.readline())
        reap.append(pid)
        yield script, pid
    finally:
        script.kill()


def test_child_server_is_a_python_m_agentnb_server_process() -> None:
    agent = Worker("W0", to_dist=True)
    pid = agent.pid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")
    assert b"-m" in cmdline and b"agentnb.server" in cmdline
    assert Worker("W1").to_dist().pid() == pid  # reused for the next agent


def test_script_without_main_guard_is_not_rerun_by_the_child(tmp_path) -> None:
    # multiprocessing's spawn would re-import __main__ and print the marker again.
    path = write_script(tmp_path, """
        print("top of the script", flush=True)
        from agentnb import RpcMeta

        class Thing(metaclass=RpcMeta):
            def where(self):
                import os
                return os.getpid()

        import os
        print(Thing(to_dist=True).where() != os.getpid())
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top of the script", "True"]


def test_no_child_left_after_a_normal_exit(tmp_path, reap) -> None:
    path = write_script(tmp_path, PRELUDE + """
    print(agents[1](Msg("user", content="done")).content, flush=True)
    """)
    with _started(path, reap) as (script, pid):
        rc, lines, stderr = script.wait()
        assert rc == 0, stderr
        assert lines == ["done"]
        wait_pid_gone(pid)


def test_no_child_left_after_an_uncaught_exception(tmp_path, reap) -> None:
    path = write_script(tmp_path, PRELUDE + """
    raise RuntimeError("the script failed")
    """)
    with _started(path, reap) as (script, pid):
        rc, _, stderr = script.wait()
        assert rc == 1 and "the script failed" in stderr
        wait_pid_gone(pid)


def test_no_child_left_after_the_main_process_is_killed(tmp_path, reap) -> None:
    path = write_script(tmp_path, PRELUDE + """
    sys.stdin.read()  # wait here until killed
    """)
    with _started(path, reap) as (script, pid):
        os.kill(script.process.pid, signal.SIGKILL)
        script.process.wait(10)
        wait_pid_gone(pid)


@pytest.mark.parametrize("pending_work", [False, True], ids=["idle", "busy"])
def test_script_exits_promptly_after_its_last_line(tmp_path, reap, pending_work) -> None:
    # The last line is a timestamp; the process must be gone half a second later
    # (checked with a wide margin: stopping child servers must not take seconds).
    extra = "agents[2].sleep_for(30)  # still running at the end" if pending_work else ""
    path = write_script(tmp_path, PRELUDE + f"""
    {extra}
    print(agents[0](Msg("user", content="ok")).content, flush=True)
    print(time.time(), flush=True)
    """)
    with _started(path, reap) as (script, pid):
        rc, lines, stderr = script.wait()
        assert rc == 0, stderr
        assert lines[0] == "ok"
        exit_delay = script.exited_at - float(lines[-1])
        assert exit_delay < 1.0, f"the script took {exit_delay:.2f} s to exit after its last line"
        wait_pid_gone(pid)
