"""``to_dist`` sends the creation and returns: creating many objects costs one round
trip, not one each. The object's ``__init__`` runs on the server meanwhile; the
proxy's first use (or ``agentnb.wait_created``) waits for it and raises what it raised.
"""

from __future__ import annotations

import textwrap

import pytest
from agents_for_tests import Counter, CustomError, SlowStart, Worker
from helpers_runtime import free_port, run_script, script_env, wait_for, write_script
from kernel_fixtures import Kernel
from network_cut import TO_CLIENT, TO_SERVER, proxy_to

import agentnb
from agentnb import AuthenticationError, ServerUnavailable
from agentnb.wire import local_socket


def test_to_dist_returns_before_init_finishes_and_the_first_use_waits(server) -> None:
    gatekeeper = Worker("keeper", to_dist=server.to_dist)
    slow = SlowStart("init-gate", to_dist=server.to_dist)  # its __init__ waits for the gate: to_dist did not
    assert "being created" in repr(slow)  # (a repr waits 1 s at most for the name)
    with pytest.raises(TimeoutError, match="not created"):
        agentnb.wait_created(slow, timeout=0.05)
    gatekeeper.release("init-gate")
    assert slow.opened_by() == "init-gate"  # waited for __init__, then ran
    assert "being created" not in repr(slow)
    agentnb.wait_created(slow, gatekeeper)  # known to exist: returns at once


def test_many_creations_then_calls_all_land_on_their_objects(server) -> None:
    counters = [Counter(start=i, to_dist=server.to_dist) for i in range(200)]
    assert [c.add(1) for c in counters] == [i + 1 for i in range(200)]
    assert server.connection().info().agents == 200
    for counter in counters:
        counter.close()
    assert server.connection().info().agents == 0


def test_a_failed_creation_does_not_hurt_the_others(server) -> None:
    made = [Counter(start=i, fail=(i == 3), to_dist=server.to_dist) for i in range(6)]
    with pytest.raises(CustomError, match="refusing to start"):
        agentnb.wait_created(*made)
    assert [c.add(0) for i, c in enumerate(made) if i != 3] == [0, 1, 2, 4, 5]
    assert server.connection().info().agents == 5


def test_a_proxy_whose_creation_failed_cannot_be_passed_on_and_says_why(server) -> None:
    failed = Counter(start=0, fail=True, to_dist=server.to_dist)
    worker = Worker("w", to_dist=server.to_dist)
    with pytest.raises(agentnb.SerializationError) as raised:
        worker.echo(failed)
    message = str(raised.value)
    assert "an argument of w.echo() cannot be pickled" in message
    assert "cannot be passed on: it does not exist" in message and "CustomError: refusing to start" in message
    assert worker.echo(1) == 1  # nothing was sent: the worker carries on


def test_a_dropped_proxy_deletes_its_object_even_before_it_was_created(server) -> None:
    gatekeeper = Worker("keeper", to_dist=server.to_dist)
    SlowStart("drop-gate", to_dist=server.to_dist)  # dropped at once, still in __init__ on the server
    gatekeeper.release("drop-gate")
    wait_for(lambda: server.connection().info().agents == 1, 30, "the dropped object's deletion")


def test_an_unreachable_server_or_a_wrong_token_is_raised_by_to_dist(server) -> None:
    with pytest.raises(ServerUnavailable, match=str(port := free_port())):
        Counter(to_dist={"host": "127.0.0.1", "port": port, "token": "t"})
    with pytest.raises(AuthenticationError):
        Counter(to_dist={"host": server.host, "port": server.port, "token": "not-the-token"})


def test_wait_created_refuses_what_is_not_a_proxy() -> None:
    with pytest.raises(TypeError, match="proxies returned by to_dist"):
        agentnb.wait_created(Counter())


def test_a_notebook_cell_shows_why_an_object_it_created_failed(kernel: Kernel) -> None:
    cell = kernel.run(textwrap.dedent("""
        %load_ext agentnb
        import agentnb

        class Broken(agentnb.AgentBase):
            def __init__(self, name):
                super().__init__(name)
                raise ValueError(f"cannot build {name}")

        fine = agentnb.AgentBase("fine", to_dist=True)
        broken = Broken("b0", to_dist=True)
        print("the cell went on")
    """))
    assert "the cell went on" in cell.stdout
    assert "agentnb: Broken was not created" in cell.stderr
    assert "ValueError: cannot build b0" in cell.stderr
    seen = kernel.run(textwrap.dedent("""
        seen_here = Broken("b1", to_dist=True)
        try:
            agentnb.wait_created(seen_here)
        except ValueError as exc:
            print("the cell saw:", exc)
    """))
    assert "the cell saw: cannot build b1" in seen.stdout and "agentnb:" not in seen.stderr  # not told twice
    used = kernel.run("broken.reply()", expect_error=True)
    assert used.ename == "ValueError" and "cannot build b0" in used.evalue
    assert kernel.run("print(fine.name)").stdout.strip() == "fine"
    quiet = kernel.run("more = [agentnb.AgentBase(f'a{i}', to_dist=True) for i in range(3)]")
    assert "agentnb:" not in quiet.stderr


def test_interrupting_the_end_of_cell_wait_keeps_the_object_coming(kernel: Kernel,
                                                                   tmp_path) -> None:
    cell_done, go = tmp_path / "cell-done", tmp_path / "go"
    msg_id = kernel.submit(textwrap.dedent(f"""
        %load_ext agentnb
        import os, time
        import agentnb

        class Patient(agentnb.AgentBase):
            def __init__(self, name):
                super().__init__(name)
                while not os.path.exists({str(go)!r}):  # the test says when __init__ may end
                    time.sleep(0.01)

        def mark_once(result, marked=[]):  # runs just before agentnb's end-of-cell report
            if not marked:
                marked.append(True)
                open({str(cell_done)!r}, "w").close()

        get_ipython().events.callbacks["post_run_cell"].insert(0, mark_once)
        patient = Patient("p", to_dist=True)
    """))
    wait_for(cell_done.exists, 60, "the cell's code to end")
    kernel.manager.interrupt_kernel()  # the kernel now waits in the end-of-cell report
    cell = kernel.collect(msg_id)
    assert cell.status == "ok", (cell.ename, cell.evalue, cell.traceback[-3000:], cell.stderr)
    assert "interrupted; 1 object(s) of this cell still being created" in cell.stderr
    go.touch()
    assert kernel.run("print(patient.name)").stdout.strip() == "p"


def test_an_object_a_script_creates_on_its_last_line_reaches_the_server(server, tmp_path) -> None:
    path = write_script(tmp_path, f"""
        import agentnb
        from agents_for_tests import Holder, Worker

        agentnb.set_default_server({server.host!r}, {server.port}, {server.token!r}, detached=True)
        Worker("keeper", to_dist=True).name  # the connection answered: the next creation is only sent
        Holder(b"x" * (64 << 20), to_dist=True)  # 64 MiB to stream, and the script ends at once
    """)
    done = run_script(path, env=script_env(AGENTNB_SHM="0"))
    assert done.returncode == 0, done.stderr
    assert [a.size() for a in agentnb.list_agents(server.host, server.port, server.token)
            if "Holder" in repr(a)] == [64 << 20]


def test_a_failed_creation_nobody_used_is_logged(server, tmp_path) -> None:
    path = write_script(tmp_path, f"""
        import gc

        import agentnb
        from agents_for_tests import Counter

        where = {{"host": {server.host!r}, "port": {server.port}, "token": {server.token!r}}}
        Counter(fail=True, to_dist=where)  # the first creation waits to be queued, not for __init__
        dropped = Counter(fail=True, to_dist=where)
        kept = Counter(fail=True, to_dist=where)
        try:
            Counter(fail=True, to_dist=where).add()
        except Exception as exc:
            print("seen:", type(exc).__name__)
        del dropped
        gc.collect()
        agentnb.list_agents(**where)  # (waits for the creations: an unanswered one at exit is not told)
    """)
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "seen: CustomError"
    told = [line for line in done.stderr.splitlines() if "was not created on the agent server" in line]
    assert len(told) == 3 and all("CustomError: refusing to start" in line for line in told), done.stderr


def test_an_object_whose_creation_answer_was_lost_with_the_connection_is_asked_for(server, monkeypatch) -> None:
    """The server made the object, the network lost its answer: the first use asks, and works."""
    monkeypatch.setenv(local_socket.ENV_LOCAL_SOCKET, "0")  # through the proxy, as from another host
    with proxy_to(server.port) as proxy:
        address = {"host": "127.0.0.1", "port": proxy.port, "token": server.token}
        first = Worker("first", to_dist=address)
        assert first.echo(1) == 1  # the session is open
        proxy.hold(TO_CLIENT)
        late = Worker("late", to_dist=address)
        wait_for(lambda: server.connection().info().agents == 2, what="the server to make the object")
        proxy.cut()  # its answer is lost with the connection
        assert late.echo("still there") == "still there"  # a new session: asked for, not made again
        assert late.name == "late"
        assert server.connection().info().agents == 2


def test_a_creation_lost_on_its_way_says_so_at_each_use(server, monkeypatch) -> None:
    """The CREATE never reached the server: each use says the answer was lost and that the
    server has no such object (it asks again each time), and hurts nothing else."""
    monkeypatch.setenv(local_socket.ENV_LOCAL_SOCKET, "0")
    with proxy_to(server.port) as proxy:
        address = {"host": "127.0.0.1", "port": proxy.port, "token": server.token}
        first = Worker("first", to_dist=address)
        assert first.echo(1) == 1
        proxy.hold(TO_SERVER)
        lost = Worker("lost", to_dist=address)
        proxy.cut()
        for _ in range(2):
            with pytest.raises(ServerUnavailable) as raised:
                lost.echo(2)
            assert any("has no such object" in note for note in raised.value.__notes__)
        assert first.echo(3) == 3
        assert server.connection().info().agents == 1
