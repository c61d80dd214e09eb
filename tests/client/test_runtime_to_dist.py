"""to_dist: child mode and independent mode, by method and by constructor argument."""

from __future__ import annotations

import os
import socket

import agents_for_tests
import pytest
from agents_for_tests import Counter, Worker

from agentnb import AgentServerError, Msg, RpcAgentServerLauncher, RpcMeta, RpcObject, list_agents


def test_to_dist_method_child_mode_runs_in_another_process() -> None:
    agent = Worker("W0").to_dist()
    assert isinstance(agent, RpcObject)
    assert agent.pid() != os.getpid()
    assert agent.reply(agentnb_msg("hi")).content == "W0(hi)"


def test_to_dist_true_child_mode_reuses_the_child_server() -> None:
    first = Worker("W0", to_dist=True)
    second = Counter(3, to_dist=True)
    third = Worker("W2").to_dist()
    assert first.pid() == third.pid() != os.getpid()
    assert second.built_in == first.pid()


def test_to_dist_method_independent_mode(server) -> None:
    agent = Worker("W0").to_dist(host=server.host, port=server.port, token=server.token)
    assert agent.pid() == server.process.pid


def test_to_dist_dict_independent_mode(server) -> None:
    agent = Worker("W0", to_dist={"host": server.host, "port": server.port, "token": server.token})
    assert agent.pid() == server.process.pid
    # The seed writes the port as a string.
    other = Worker("W1", to_dist={"host": "localhost", "port": str(server.port), "token": server.token})
    assert other.pid() == server.process.pid


def test_to_dist_dict_is_not_modified_and_can_be_reused(server) -> None:
    options = {"host": server.host, "port": server.port, "token": server.token}
    snapshot = dict(options)
    agents = [Worker(f"W{i}", to_dist=options) for i in range(3)]
    assert options == snapshot
    assert [a.reply(agentnb_msg(i)).content for i, a in enumerate(agents)] == ["W0(0)", "W1(1)", "W2(2)"]


def test_independent_mode_finds_the_token_of_a_server_of_this_user() -> None:
    # A launcher records its token in this user's runtime folder: host and port are enough.
    launcher = RpcAgentServerLauncher(host="localhost", port=None)
    launcher.launch(in_subprocess=True)
    try:
        agent = Worker("W0").to_dist(host="localhost", port=launcher.port)
        assert agent.pid() == launcher.process.pid
    finally:
        launcher.shutdown(grace=0)


def test_to_dist_argument_never_builds_the_object_in_the_caller(server) -> None:
    before = agents_for_tests.BUILT
    remote = Counter(5, to_dist=server.to_dist)
    child = Counter(6, to_dist=True)
    assert agents_for_tests.BUILT == before
    assert remote.built_here() == 1  # built once, on the server
    assert (remote.value, child.value) == (5, 6)


def test_to_dist_method_rebuilds_from_init_arguments(server) -> None:
    local = Counter(5)
    local.add(10)  # state changed after creation is not carried (the seed says so)
    remote = local.to_dist(**server.to_dist)
    assert remote.value == 5
    assert remote.add(1) == 6
    assert local.value == 15


def test_any_rpcmeta_class_can_be_distributed(server) -> None:
    counter = Counter(1, to_dist=server.to_dist)
    assert counter.add(2) == 3
    assert counter.add_later(4).result(timeout=30) == 7
    assert counter.value == 7


def test_to_dist_on_a_proxy_is_refused(server) -> None:
    counter = Counter(1, to_dist=server.to_dist)
    counter.add(5)
    with pytest.raises(TypeError, match="already distributed"):
        counter.to_dist()
    assert counter.value == 6  # the one object, untouched
    assert len(list_agents(server.host, server.port, server.token)) == 1


def test_a_base_class_own_to_dist_is_kept_by_subclasses() -> None:
    class Base(metaclass=RpcMeta):
        def to_dist(self, **options: object) -> str:
            return "custom"

    class Child(Base):
        pass

    assert Child().to_dist() == "custom"


def test_to_dist_false_builds_locally() -> None:
    before = agents_for_tests.BUILT
    counter = Counter(1, to_dist=False)
    assert type(counter) is Counter and not isinstance(counter, RpcObject)
    assert agents_for_tests.BUILT == before + 1 and counter.built_in == os.getpid()  # built here
    assert counter.add(2) == 3 and counter.value == 3  # its methods run on this very object


def test_bad_to_dist_options_are_refused_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="unknown to_dist option"):
        Worker("W0", to_dist={"hots": "localhost", "port": 1})
    with pytest.raises(TypeError, match="both host and port"):
        Worker("W0", to_dist={"host": "localhost"})


def test_explicit_port_that_is_taken_is_an_error(start_server) -> None:
    first = start_server()
    with pytest.raises(AgentServerError):
        start_server(port=first.port)
    launcher = RpcAgentServerLauncher(host="localhost", port=first.port)
    with pytest.raises(AgentServerError, match=str(first.port)):
        launcher.launch(in_subprocess=False)
    # The first server is untouched.
    assert Worker("W0", to_dist=first.to_dist).pid() == first.process.pid


def test_explicit_port_taken_by_another_program_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        for in_subprocess in (True, False):
            launcher = RpcAgentServerLauncher(host="localhost", port=port)
            with pytest.raises(AgentServerError):
                launcher.launch(in_subprocess=in_subprocess)



def agentnb_msg(content: object) -> Msg:
    return Msg("user", content=content, role="user")
