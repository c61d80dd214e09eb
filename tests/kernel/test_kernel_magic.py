"""The %agent_server magic in a real kernel: loading, help, every wrong argument, stale entries."""

from __future__ import annotations

import os
import pathlib
import signal

from helpers_runtime import wait_for
from kernel_fixtures import Kernel

from agentnb.runtime_dir import pid_alive, read_record

# (line, what the error message must name)
BAD_LINES = [
    ("strat", "unknown command 'strat'"),
    ("start --capacity 0", "--capacity"),
    ("start --capacity many", "--capacity"),
    ("start --port 70000", "--port"),
    ("start --port http", "--port"),
    ("start --pool-type memcached", "--pool-type"),
    ("start --pool-type redis", "--redis-url"),
    ("start --redis-url redis://localhost:6379", "--pool-type redis"),
    ("start --max-expire-time 0", "--max-expire-time"),
    ("start --max-len 0", "--max-len"),
    ("start --max-len 5 --pool-type redis --redis-url redis://x", "--max-len"),
    ("start --model-config-path /nonexistent/models.json", "--model-config-path"),
    ("start --name ../evil", "invalid daemon name '../evil'"),
    ("start --host", "--host"),
    ("start --host 0.0.0.0", "--host '0.0.0.0'"),
    ("start --bogus", "--bogus"),
    ("start 'unclosed", "cannot read the arguments"),
    ("status", "name"),
    ("status ghost", "no agent server named 'ghost'"),
    ("logs ghost", "'ghost'"),
    ("logs ghost -n -3", "-n"),
    ("stop", "--all"),
    ("stop ghost --all", "--all"),
    ("stop ghost", "no agent server named 'ghost'"),
    ("stop --all --grace soon", "--grace"),
    ("use", "--none"),
    ("use ghost", "no agent server named 'ghost'"),
    ("list extra", "extra"),
]


def test_every_wrong_argument_gets_a_clear_error(kernel: Kernel) -> None:
    kernel.run("%load_ext agentnb")
    for line, needle in BAD_LINES:
        result = kernel.run(f"%agent_server {line}", expect_error=True)
        assert result.ename in ("UsageError", "DaemonError"), (line, result)
        assert needle in result.evalue, (line, result.evalue)
        assert "Traceback" not in result.traceback, (line, result.traceback)
    assert read_record("daemon-1") is None, "no wrong line may start anything"


def test_help_load_twice_and_unload(kernel: Kernel) -> None:
    kernel.run("%load_ext agentnb")
    kernel.run("%load_ext agentnb")  # harmless
    help_text = kernel.run("%agent_server --help").stdout
    for command in ("start", "list", "status", "logs", "stop", "use"):
        assert command in help_text
    assert kernel.run("%agent_server").stdout == help_text
    start_help = kernel.run("%agent_server start --help").stdout
    for flag in ("--name", "--host", "--port", "--capacity", "--pool-type", "--redis-url", "--max-expire-time",
                 "--max-len", "--model-config-path"):
        assert flag in start_help
    assert "-n" in kernel.run("%agent_server logs --help").stdout

    kernel.run("%unload_ext agentnb")
    gone = kernel.run("%agent_server list", expect_error=True)
    assert gone.ename == "UsageError" and "agent_server" in gone.evalue
    kernel.run("%load_ext agentnb")
    assert "No agent server is running" in kernel.run("%agent_server list").text


def test_dead_daemons_are_dropped_and_their_logs_kept(kernel: Kernel, runtime_dir: str) -> None:
    kernel.run("%load_ext agentnb")
    kernel.run("%agent_server start --name doomed\n%agent_server start")
    doomed = read_record("doomed")
    assert doomed is not None and read_record("daemon-1") is not None

    os.kill(doomed.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(doomed.pid), 10, what="the killed daemon to be gone")
    listing = kernel.run("%agent_server list").outputs[0]
    assert "daemon-1" in listing["text/plain"] and "doomed" not in listing["text/plain"]
    assert "doomed" not in listing["text/html"]
    assert not pathlib.Path(runtime_dir, "servers", "doomed.json").exists()
    assert "listening" in kernel.run("%agent_server logs doomed -n 3").stdout
    assert "'doomed'" in kernel.run("%agent_server use doomed", expect_error=True).evalue

    # The kernel's default died with it: the next daemon started takes its place.
    kernel.run("%agent_server start --name second")
    out = kernel.run("import agentnb, os\nclass P(agentnb.AgentBase):\n    def pid(self):\n"
                     "        return os.getpid()\nprint(P('p', to_dist=True).pid())").stdout
    assert out.strip() == str(read_record("second").pid)

    stopped = kernel.run("%agent_server stop --all").stdout
    assert "'daemon-1'" in stopped and "'second'" in stopped
    assert "No agent server is running" in kernel.run("%agent_server list").text


def test_start_flags_reach_the_server(kernel: Kernel, tmp_path: pathlib.Path) -> None:
    models = tmp_path / "models.json"
    models.write_text("[]")
    kernel.run("%load_ext agentnb")
    kernel.run("%agent_server start --name flagged --host 127.0.0.1 --port 0 --capacity 3 --max-len 100 "
               f"--max-expire-time 60 --model-config-path {models}")
    status = kernel.run("%agent_server status flagged").outputs[0]["text/plain"]
    assert "capacity   3" in status and "127.0.0.1:" in status and "pool       local" in status
    record = read_record("flagged")
    argv = pathlib.Path(f"/proc/{record.pid}/cmdline").read_bytes().decode().split("\0")
    for flag, value in [("--max-len", "100"), ("--max-expire-time", "60.0"), ("--model-config-path", str(models))]:
        assert argv[argv.index(flag) + 1] == value
    kernel.run("%agent_server stop flagged")
