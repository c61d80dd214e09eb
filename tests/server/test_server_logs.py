"""A server's log: what a daemon's log file (``agentnb.server_logs``) and a server's output record.

At INFO: the start line once, clients, agents created and deleted, creations that
failed, every failed and cancelled call (agent, method, error type, duration), the
stop and its reason; no line per successful call. At DEBUG: those too.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from agents_for_tests import Counter, CustomError, Worker
from helpers_runtime import script_env

import agentnb
from agentnb import DaemonError, RpcAgentServerLauncher

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) \S")
DURATION = r"[\d.]+ m?s"



def _lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines), text  # one format: time, level, message
    return lines


def test_info_log_has_lifecycle_agents_and_every_failed_or_cancelled_call(daemons: None) -> None:
    agentnb.start_server("lab")
    w0 = Worker("W0", to_dist=True)
    w1 = Worker("W1", to_dist=True)
    assert w0.echo("fine") == "fine"
    with pytest.raises(CustomError):
        w0.fail("bad input")
    with pytest.raises(ValueError):
        w0.fail_later("too late").result(30)
    with pytest.raises(CustomError):
        Counter(fail=True, to_dist=True).add(1)
    held = w0.hold("gate-lab", "held")
    queued = w0.hold("gate-lab", "never")  # behind the held call in W0's mailbox: cancellable
    assert queued.cancel()
    w1.release("gate-lab")
    assert held.result(30) == "held"
    w1.close()
    agentnb.stop_server("lab", grace=5)

    lines = _lines(agentnb.server_logs("lab", 200))
    text = "\n".join(lines)
    starts = [line for line in lines if "listening on" in line]
    assert len(starts) == 1, text  # the start line once (not a print and a log record)
    assert re.search(r"INFO agent server lab listening on \S+ \(capacity 32, pid \d+\)", starts[0])
    assert re.search(r"INFO client connected: pid \d+", text)
    worker = f"agents_for_tests.Worker 'W0' \\(id {w0.agent_id}\\)"
    assert re.search(f"INFO agent created: {worker} in {DURATION}", text)
    assert re.search(f"INFO W0\\.fail failed after {DURATION}: agents_for_tests\\.CustomError: bad input "
                     f"\\[{worker}\\]", text), text
    assert re.search(f"INFO W0\\.fail_later failed after {DURATION}: ValueError: too late \\[{worker}\\]", text)
    assert re.search(f"INFO creation of agents_for_tests\\.Counter \\(id \\w+\\) failed after {DURATION}: "
                     "agents_for_tests\\.CustomError: refusing to start", text), text
    assert re.search(f"INFO W0\\.hold cancelled before it ran, by its caller \\[{worker}\\]", text), text
    assert f"INFO agent deleted: agents_for_tests.Worker 'W1' (id {w1.agent_id})" in text
    assert "INFO agent server lab received SIGTERM" in text and "INFO agent server lab stopped" in text
    assert " done in " not in text and "DEBUG" not in text  # successful calls only at DEBUG


def test_debug_log_has_every_successful_call(daemons: None) -> None:
    agentnb.start_server("chatty", log_level="debug")
    w0 = Worker("W0", to_dist=True)
    assert w0.echo(1) == 1
    assert w0.name == "W0"  # an attribute read
    agentnb.stop_server("chatty", grace=5)

    text = "\n".join(_lines(agentnb.server_logs("chatty", 200)))
    worker = f"agents_for_tests.Worker 'W0' \\(id {w0.agent_id}\\)"
    assert re.search(f"DEBUG W0\\.echo done in {DURATION} \\[{worker}\\]", text), text
    assert re.search(f"DEBUG W0\\.name \\(read\\) done in {DURATION}", text), text
    assert len([line for line in text.splitlines() if "listening on" in line]) == 1


def test_server_command_line_logs_at_its_level_and_says_why_it_stopped(start_server, tmp_path) -> None:
    path = tmp_path / "server.log"
    with open(path, "w") as log:
        server = start_server("--log-level", "DEBUG", "--name", "cli", stdout=log, stderr=subprocess.STDOUT)
        w0 = Worker("W0", to_dist=server.to_dist)
        assert w0.echo("x") == "x"
        server.connection().shutdown(grace=1)
        assert server.process.wait(30) == 0
    text = "\n".join(_lines(path.read_text()))
    assert re.search(f"DEBUG W0\\.echo done in {DURATION}", text), text
    assert "INFO shutdown asked by a client (Shutdown RPC, grace 1 s)" in text
    assert "INFO agent server cli stopped" in text


@pytest.mark.parametrize("level", ["LOUD", "info2", ""])
def test_a_bad_log_level_is_refused_naming_the_accepted_ones(level: str, daemons: None) -> None:
    with pytest.raises(DaemonError, match=f"--log-level must be one of DEBUG, INFO, WARNING, ERROR, got '{level}'"):
        agentnb.start_server("never", log_level=level)
    assert not [s for s in agentnb.list_servers() if s.record.name == "never"]
    with pytest.raises(ValueError, match="log level must be one of DEBUG, INFO, WARNING, ERROR"):
        RpcAgentServerLauncher(log_level=level)
    done = subprocess.run([sys.executable, "-m", "agentnb.server", "--port", "0", "--log-level", level],
                          capture_output=True, text=True, timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "--log-level" in done.stderr and "'DEBUG', 'INFO', 'WARNING', 'ERROR'" in done.stderr


def test_a_launched_subprocess_server_logs_at_the_launchers_level(capfd: pytest.CaptureFixture[str]) -> None:
    launcher = RpcAgentServerLauncher(host="127.0.0.1", port=None, capacity=2, log_level="DEBUG")
    launcher.launch()
    try:
        assert Worker("W0", to_dist={"host": "127.0.0.1", "port": launcher.port}).echo(5) == 5
    finally:
        launcher.shutdown(grace=1)
    out = capfd.readouterr().out  # the subprocess writes its log on the standard output it inherited
    assert re.search(f"DEBUG W0\\.echo done in {DURATION}", out), out


def test_an_in_process_server_logs_at_the_launchers_level(caplog: pytest.LogCaptureFixture) -> None:
    server_logger = logging.getLogger("agentnb.server")
    level = server_logger.level
    launcher = RpcAgentServerLauncher(host="127.0.0.1", port=None, capacity=2, log_level="DEBUG")
    try:
        launcher.launch(in_subprocess=False)
        assert Worker("W0", to_dist={"host": "127.0.0.1", "port": launcher.port}).echo(5) == 5
    finally:
        launcher.shutdown(grace=1)
        server_logger.setLevel(level)
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("agentnb.server")]
    assert any(re.fullmatch(f"W0\\.echo done in {DURATION} \\[.*\\]", m) for m in messages), messages
    assert any(m.startswith(f"agent server {launcher.name} listening on 127.0.0.1:{launcher.port}") for m in messages)
