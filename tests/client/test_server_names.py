"""A server is shown by the name a person gave it, then one form of its address: in reprs, in
``call_info``, in errors; and ``get_agent`` with no default server looks through your running servers."""

from __future__ import annotations

import os
import signal

import pytest
from helpers_runtime import free_port, wait_for, wait_pid_gone

import agentnb
from agentnb import AgentBase, AgentNotFound, AgentServerError, ServerUnavailable, async_func
from agentnb.rpc.connection import ServerConnection
from agentnb.runtime_dir import read_record, remove_record


class Named(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @async_func
    def later(self, n: int) -> int:
        return n * 2



def test_a_named_daemon_is_shown_by_its_name_and_named_when_it_is_lost(daemons: None) -> None:
    lab = agentnb.start_server("lab", use=False)
    record = read_record("lab")
    assert record is not None and record.address.startswith("unix:")
    shown = f"agent server 'lab' at {record.address}"

    w0 = Named("W0", to_dist=lab)
    assert w0.add(1) == 1
    assert repr(w0).endswith(f"on {shown}>"), repr(w0)
    res = w0.later(4)
    assert res.result(timeout=30) == 8
    assert res.call_info.server == "lab" and res.call_info.address == record.address
    assert f"on {shown}>" in repr(res)

    os.kill(record.pid, signal.SIGKILL)
    wait_pid_gone(record.pid)
    with pytest.raises(ServerUnavailable) as lost:
        w0.add(1)
    assert shown in str(lost.value)  # which server went, by its name and address


def test_loopback_names_make_one_address_and_a_pool_replica_shows_its_own_name(daemons: None) -> None:
    port = free_port()
    agentnb.start_server("tcp", host="localhost", port=port, use=False)
    record = read_record("tcp")
    assert record is not None and record.host == "localhost"
    assert record.address == f"127.0.0.1:{port}"  # never localhost here and 127.0.0.1 there
    [listed] = [status for status in agentnb.list_servers() if status.record.name == "tcp"]
    assert listed.reachable and listed.record.address == f"127.0.0.1:{port}"
    for host in ("localhost", "127.0.0.1"):
        assert ServerConnection.get(host, port, record.token).display == f"agent server 'tcp' at 127.0.0.1:{port}"

    farm = agentnb.start_server("farm", replicas=2, use=False)
    on_farm = Named("F", to_dist=farm)
    assert on_farm.later(1).call_info.server in ("farm-0", "farm-1")


def test_a_child_server_is_shown_as_this_process_s(daemons: None) -> None:
    child = Named("C", to_dist=True)
    info = child.later(1).call_info
    assert info.server.startswith("child server of this ") and info.address.startswith("unix:")
    assert f"on {info.server} at {info.address}>" in repr(child)


def test_a_server_without_a_record_is_asked_its_name_once(start_server) -> None:
    # As a server on another machine: it answers, but this user's runtime directory does not know it.
    server = start_server("--name", "remote")
    remove_record("remote")
    far = Named("R", to_dist=server.to_dist)
    assert far.add(2) == 2
    conn = server.connection()
    wait_for(lambda: conn.name == "remote", 15, "the server's name from its GetInfo")
    assert far.later(1).call_info.server == "remote"


def test_get_agent_without_a_default_looks_through_your_running_servers(daemons: None) -> None:
    with pytest.raises(AgentServerError, match="start one with %agent_server start"):
        agentnb.get_agent("W0")  # nothing runs: the one case where starting a server is the advice

    lab = agentnb.start_server("lab", use=False)
    lab2 = agentnb.start_server("lab2", use=False)
    assert agentnb.default_server_name() is None
    w0 = Named("W0", to_dist=lab)
    assert w0.add(5) == 5

    found = agentnb.get_agent("W0")  # no default: found on 'lab', the one server holding it
    assert found.add(1) == 6
    assert "agent server 'lab' at" in repr(found)
    assert [a.name for a in agentnb.list_agents()] == ["W0"]

    with pytest.raises(AgentNotFound) as missing:
        agentnb.get_agent("nobody")
    text = str(missing.value)
    assert "'lab' and 'lab2'" in text and "start" not in text  # yours run: never told to start one

    other = Named("W0", to_dist=lab2)
    assert other.add(100) == 100
    with pytest.raises(AgentNotFound) as several:
        agentnb.get_agent("W0")
    assert "'W0' lives on 'lab' and 'lab2'" in str(several.value) and "server=" in str(several.value)
    assert agentnb.get_agent("W0", server="lab2").add(1) == 101
    assert agentnb.get_agent(w0.agent_id).add(1) == 7  # an id is one object wherever it lives
    with pytest.raises(AgentServerError, match="no agent server named 'lab3' is running"):
        agentnb.get_agent("W0", server="lab3")
