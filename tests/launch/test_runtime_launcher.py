"""RpcAgentServerLauncher: in this process and in a subprocess."""

from __future__ import annotations

import os
import threading

import pytest
from agents_for_tests import Worker
from helpers_runtime import Script, wait_for, wait_pid_gone, write_script

from agentnb import AgentServerError, Msg, RpcAgentServerLauncher
from agentnb.rpc.placement import connect
from agentnb.runtime_dir import find_token


@pytest.fixture
def launchers():
    """Launchers a test made; each is shut down when the test ends."""
    made: list[RpcAgentServerLauncher] = []
    yield made
    for launcher in made:
        launcher.shutdown(grace=0)


def test_launch_in_this_process(launchers) -> None:
    launcher = RpcAgentServerLauncher(host="localhost", port=None, custom_agent_classes=[Worker], capacity=4)
    launchers.append(launcher)
    launcher.launch(in_subprocess=False)
    assert launcher.port and launcher.port > 0  # a free port was picked and reported
    assert find_token("localhost", launcher.port)  # recorded for this user's other processes
    agent = Worker("W0").to_dist(host="localhost", port=launcher.port)
    assert agent.pid() == os.getpid()
    assert agent.reply(Msg("user", content="x")).content == "W0(x)"

    waiter = threading.Thread(target=launcher.wait_until_terminate, daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # serving until shut down
    launcher.shutdown(grace=1)
    waiter.join(15)
    assert not waiter.is_alive(), "wait_until_terminate did not return after shutdown"
    assert find_token("localhost", launcher.port) is None


def _repliers() -> int:
    return sum(thread.name == "agentnb-replier" for thread in threading.enumerate())


def test_an_in_process_server_leaves_no_thread_behind_it(launchers) -> None:
    before = _repliers()
    launcher = RpcAgentServerLauncher(host="localhost", port=None, custom_agent_classes=[Worker], capacity=4)
    launchers.append(launcher)
    launcher.launch(in_subprocess=False)
    workers = [Worker(f"W{i}").to_dist(host="localhost", port=launcher.port) for i in range(3)]
    # Calls finishing side by side: their replies go out through the server's replier thread.
    met = [worker.meet("in-process-replier", 3, 20) for worker in workers]
    assert [result.result(timeout=30) for result in met] == [True, True, True]
    assert _repliers() == before + 1
    launcher.shutdown(grace=1)
    wait_for(lambda: _repliers() == before, what="the replier thread to end")


def test_an_agents_replies_arrive_in_order_even_when_the_replier_lags(launchers, monkeypatch) -> None:
    """A small reply left to the replier thread is not overtaken by the next reply of the same
    agent, even a large one its worker would otherwise send at once."""
    from agentnb.server import servicer

    replier_waits, replier_may_go = threading.Event(), threading.Event()
    send = servicer.AgentServicer._reply

    def lagging_reply(self, *args, **kwargs):
        if threading.current_thread().name == "agentnb-replier":
            replier_waits.set()
            replier_may_go.wait(30)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(servicer.AgentServicer, "_reply", lagging_reply)
    launcher = RpcAgentServerLauncher(host="localhost", port=None, custom_agent_classes=[Worker], capacity=4)
    launchers.append(launcher)
    launcher.launch(in_subprocess=False)
    place = {"host": "localhost", "port": launcher.port}
    keeper, worker = Worker("keeper", to_dist=place), Worker("worker", to_dist=place)
    gate = f"order-{os.getpid()}"
    worker.release(gate + "-big")  # nothing else runs yet: this reply is sent by its worker
    held = keeper.hold(gate)  # from now on another call runs, so small replies go to the replier
    wait_for(lambda: connect("localhost", launcher.port).info().busy == 1, what="the held call")
    arrived: list[str] = []
    small = worker.sleep_for(0)
    small.add_done_callback(lambda _: arrived.append("small"))
    large = worker.hold(gate + "-big", b"x" * (1 << 20))  # the same agent's next reply: 1 MiB, made at once
    large.add_done_callback(lambda _: arrived.append("large"))
    assert replier_waits.wait(30), "the small reply never reached the replier"
    replies = launcher.server.servicer._replies
    wait_for(lambda: arrived or replies.qsize() >= 1, what="the large reply to be sent or queued")
    replier_may_go.set()
    assert large.result(timeout=30) == b"x" * (1 << 20) and small.result(timeout=30) == 0
    wait_for(lambda: len(arrived) == 2, what="both callbacks")
    assert arrived == ["small", "large"]
    worker.release(gate)  # by another agent: the keeper runs one call at a time
    assert held.result(timeout=30) is None


def test_launch_in_a_subprocess(launchers) -> None:
    launcher = RpcAgentServerLauncher(host="localhost", port=None, custom_agent_classes=[Worker], capacity=4)
    launchers.append(launcher)
    launcher.launch(in_subprocess=True)
    assert launcher.port > 0
    agent = Worker("W0", to_dist={"host": "localhost", "port": launcher.port})
    pid = agent.pid()
    assert pid == launcher.process.pid != os.getpid()
    info = connect("localhost", launcher.port).info()
    assert (info.capacity, info.pid) == (4, pid)

    waiter = threading.Thread(target=launcher.wait_until_terminate, daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    launcher.shutdown(grace=1)
    waiter.join(15)
    assert not waiter.is_alive()
    wait_pid_gone(pid)


def test_launch_on_an_explicit_free_port(launchers) -> None:
    from helpers_runtime import free_port

    port = free_port()
    launcher = RpcAgentServerLauncher(host="localhost", port=port)
    launchers.append(launcher)
    launcher.launch(in_subprocess=True)
    assert launcher.port == port
    assert Worker("W0", to_dist={"host": "localhost", "port": port}).echo(1) == 1


def test_a_launcher_launches_once(launchers) -> None:
    launcher = RpcAgentServerLauncher(port=None)
    launchers.append(launcher)
    launcher.launch(in_subprocess=False)
    with pytest.raises(AgentServerError):
        launcher.launch(in_subprocess=False)


def test_non_loopback_host_needs_local_mode_off() -> None:
    with pytest.raises(AgentServerError, match="loopback"):
        RpcAgentServerLauncher(host="0.0.0.0", port=None).launch(in_subprocess=False)


def test_script_with_an_in_process_server_exits_without_shutdown(tmp_path) -> None:
    # A client session to the in-process server used to keep a gRPC thread, and so the script, alive forever.
    path = write_script(tmp_path, """
        import time
        from agents_for_tests import Worker
        from agentnb import RpcAgentServerLauncher

        launcher = RpcAgentServerLauncher(host="localhost", port=None)
        launcher.launch(in_subprocess=False)
        agent = Worker("W0").to_dist(host="localhost", port=launcher.port)
        print(agent.echo("served"), flush=True)
        print(time.time(), flush=True)
    """)
    script = Script(path)
    try:
        rc, lines, stderr = script.wait(30)
        assert rc == 0, stderr
        assert lines[0] == "served"
        assert script.exited_at - float(lines[-1]) < 1.0
    finally:
        script.kill()


def test_in_process_server_exits_after_shutdown_grace_even_with_a_call_running(tmp_path) -> None:
    path = write_script(tmp_path, """
        import time
        from agents_for_tests import Worker
        from agentnb import RpcAgentServerLauncher
        from agentnb.rpc.placement import connect

        launcher = RpcAgentServerLauncher(host="localhost", port=None)
        launcher.launch(in_subprocess=False)
        agent = Worker("W0").to_dist(host="localhost", port=launcher.port)
        agent.sleep_for(20)
        while connect("localhost", launcher.port).info().busy == 0:  # until the call runs
            time.sleep(0.01)
        launcher.shutdown(grace=0.2)
        print("shut down", flush=True)
    """)
    script = Script(path)
    try:
        rc, lines, stderr = script.wait(5)  # 0.2 s of grace, with a wide margin; the call needs 20 s
        assert rc == 0 and lines == ["shut down"], stderr
    finally:
        script.kill()
