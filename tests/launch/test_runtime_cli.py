"""The server's command line: ``as_server start ...`` and ``python -m agentnb.server ...``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from agents_for_tests import Worker
from helpers_runtime import Script, script_env

import agentnb
from agentnb import SerializationError
from agentnb.runtime_dir import find_token

AS_SERVER = os.path.join(os.path.dirname(sys.executable), "as_server")


def test_python_m_agentnb_server_flags(start_server) -> None:
    server = start_server("--capacity", "3", "--name", "flags-test", "--max-len", "10",
                          "--max-expire-time", "60", "--pool-type", "local")
    info = server.connection().info()
    assert (info.capacity, info.name, info.pool_type) == (3, "flags-test", "local")
    assert Worker("W0", to_dist=server.to_dist).echo("x") == "x"


def test_as_server_start_serves_until_sigterm() -> None:
    script = Script(AS_SERVER, "start", "--host", "localhost", "--port", "0", "--capacity", "2")
    try:
        line = script.readline()  # the server says where it listens
        match = re.search(r"listening on 127.0.0.1:(\d+) \(capacity 2", line)  # loopback: one form
        assert match, line
        port = int(match.group(1))
        assert find_token("localhost", port)  # recorded: host and port are enough to connect
        agent = Worker("W0").to_dist(host="localhost", port=port)
        assert agent.pid() == script.process.pid
        script.process.send_signal(signal.SIGTERM)
        rc, _, stderr = script.wait(30)
        assert rc == 0, stderr
        assert find_token("localhost", port) is None  # its record went with it
    finally:
        script.kill()


def test_as_server_without_start_prints_its_usage() -> None:
    done = subprocess.run([AS_SERVER], capture_output=True, text=True, timeout=60, env=script_env())
    assert done.returncode == 2 and "as_server start" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--capacity", "0"], "capacity"),
    (["--agent-dir", "/no/such/folder"], "not a folder"),
])
def test_bad_server_options_are_clear_errors(args, message) -> None:
    done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_server_process_tunes_its_interpreter_unless_told(start_server, monkeypatch) -> None:
    """Threads switch every 20 ms, and the garbage collector runs less often, in a server process."""
    server = start_server()
    assert Worker("W0", to_dist=server.to_dist).interpreter() == (pytest.approx(0.02), (20_000, 50, 100))
    monkeypatch.setenv("AGENTNB_SWITCH_INTERVAL", "0.005")  # Python's defaults
    monkeypatch.setenv("AGENTNB_GC_THRESHOLDS", "700,10,10")
    told = start_server()
    assert Worker("W1", to_dist=told.to_dist).interpreter() == (pytest.approx(0.005), (700, 10, 10))


@pytest.mark.parametrize("variable, value", [
    ("AGENTNB_SWITCH_INTERVAL", "soon"), ("AGENTNB_SWITCH_INTERVAL", "0"), ("AGENTNB_SWITCH_INTERVAL", "5"),
    ("AGENTNB_GC_THRESHOLDS", "700,10"), ("AGENTNB_GC_THRESHOLDS", "700,0,10"),
])
def test_bad_interpreter_settings_are_clear_errors(variable: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", "0"], capture_output=True, text=True,
                          timeout=60, env={**script_env(), variable: value}, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"${variable}" in done.stderr and value in done.stderr


def test_taken_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", str(port)], capture_output=True,
                              text=True, timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def _agent_dir(tmp_path) -> tuple[str, str]:
    """A folder with one agent module that only --agent-dir makes importable on the server."""
    module = f"dir_agents_{os.getpid()}"
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent("""
        from agentnb import AgentBase, Msg

        class DirAgent(AgentBase):
            def reply(self, x=None):
                return Msg(self.name, content="dir:" + x.content)
    """))
    return str(folder), module


@pytest.fixture
def dir_agent_class(tmp_path):
    folder, module_name = _agent_dir(tmp_path)
    # The caller imports it by file, without putting the folder on sys.path (which
    # child servers would inherit): the class travels by reference as module.DirAgent.
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(folder, f"{module_name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    yield folder, module.DirAgent
    del sys.modules[module_name]


def test_agent_dir_imports_the_classes_of_a_folder(start_server, dir_agent_class) -> None:
    from agentnb import Msg

    folder, DirAgent = dir_agent_class
    with_dir = start_server("--agent-dir", folder)
    agent = DirAgent("D", to_dist=with_dir.to_dist)
    assert agent.reply(Msg("user", content="q")).content == "dir:q"

    without = start_server()  # the same class cannot be rebuilt there
    with pytest.raises(SerializationError):
        agentnb.wait_created(DirAgent("D", to_dist=without.to_dist))


def test_model_config_path_is_loaded_by_the_server(start_server, tmp_path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([{"config_name": "local-echo", "model_type": "echo"}]))
    server = start_server("--model-config-path", str(path))
    assert "local-echo" in Worker("W0", to_dist=server.to_dist).model_config_names()


def test_as_server_holds_a_pool_of_replicas_until_sigterm() -> None:
    script = Script(AS_SERVER, "start", "--name", "clipool", "--replicas", "2", "--capacity", "3", python=None)
    try:
        assert script.readline(60) == ("server pool clipool of 2 replicas (local), capacity 3 each; token in their "
                                       "records (agentnb.find_server):")
        replicas = [script.readline(), script.readline()]
        assert [line.split()[0] for line in replicas] == ["clipool-0", "clipool-1"], replicas
        assert script.readline() == "stop with Ctrl-C or SIGTERM"
        pool = agentnb.find_server("clipool")  # recorded: the same user's notebooks and scripts find it
        pids = {Worker(f"W{i}", to_dist=pool).pid() for i in range(2)}
        assert len(pids) == 2 and script.process.pid not in pids  # one agent on each replica
        script.process.send_signal(signal.SIGTERM)
        rc, lines, stderr = script.wait(60)
        assert rc == 0 and lines[-1:] == ["server pool clipool stopped"], (lines, stderr)
        assert agentnb.list_servers() == []
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        script.kill()


@pytest.mark.parametrize("args, message", [
    (["--replicas", "2", "--port", "5999"], "--port apply to one server: a pool's replicas each take a free port"),
    (["--replicas", "2", "--agent-module", "json"], "--agent-module apply to one server"),
    (["--partition", "debug"], "--partition only apply to --launcher slurm, not local"),
    (["--launcher", "slurm", "--cpus-per-server", "0.5"], "--cpus-per-server for slurm is a whole number"),
    (["--replicas", "0"], "--replicas: expected a whole number of at least 1"),
])
def test_bad_pool_options_of_as_server_are_named(args, message) -> None:
    done = subprocess.run([AS_SERVER, "start", *args], capture_output=True, text=True, timeout=60,
                          env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert agentnb.list_servers() == []
