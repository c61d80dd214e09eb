"""Servers from a script, through the public API alone: what ``%agent_server`` does, without IPython."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import agentnb
from agentnb import AgentBase, DaemonError
from agentnb.launch.command import server_argv
from agentnb.server.cli import build_parser


class Counter(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.count = 0

    def add(self, n: int) -> int:
        self.count += n
        return self.count



def test_a_script_starts_describes_finds_and_stops_a_daemon(daemons: None, runtime_dir: str) -> None:
    lab = agentnb.start_server("lab", capacity=3)
    assert agentnb.default_server_name() == "lab"  # the first one becomes the default, as in a notebook
    counter = Counter("c0").to_dist()
    assert counter.add(2) == 2

    [listed] = [s for s in agentnb.list_servers() if s.record.name == "lab"]
    assert listed.reachable and listed.info.capacity == 3 and listed.info.agents == 1 and listed.is_default
    [described] = agentnb.describe_server("lab")
    assert [a.name for a in described.agents] == ["c0"]
    assert "listening" in agentnb.server_logs("lab", 5)

    # Another process finds it by name and reaches the same agent.
    script = textwrap.dedent("""
        import agentnb
        print(agentnb.find_server("lab").get_agent("c0").add(3))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "AGENTNB_RUNTIME_DIR": runtime_dir})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    assert lab.get_agent("c0").add(1) == 6

    assert agentnb.stop_server("lab") == ["lab"]
    assert agentnb.default_server_name() is None
    with pytest.raises(DaemonError, match="no agent server named 'lab' is running"):
        agentnb.find_server("lab")


def test_a_pool_of_daemons_is_named_as_one(daemons: None) -> None:
    farm = agentnb.start_server("farm", replicas=2, use=False)
    assert agentnb.default_server_name() is None  # use=False: placement unchanged
    assert [r.name for r in farm.replicas] == ["farm-0", "farm-1"]
    counters = [Counter(f"c{i}", to_dist=farm) for i in range(2)]
    assert [c.add(1) for c in counters] == [1, 1]
    statuses = agentnb.describe_server("farm")
    assert sorted(s.record.name for s in statuses) == ["farm-0", "farm-1"]
    assert sorted(len(s.agents) for s in statuses) == [1, 1]  # one agent on each replica
    assert agentnb.use_server("farm").name == "farm" and agentnb.default_server_name() == "farm"
    logs = agentnb.server_logs("farm", 3)
    assert "==> farm-0 <==" in logs and "==> farm-1 <==" in logs
    assert sorted(agentnb.stop_server("farm")) == ["farm-0", "farm-1"]
    assert agentnb.list_servers() == []


def test_a_wrong_option_is_named_before_anything_starts(daemons: None) -> None:
    with pytest.raises(DaemonError, match="--capacity must be at least 1"):
        agentnb.start_server("bad", capacity=0)
    with pytest.raises(DaemonError, match="--host '0.0.0.0'"):
        agentnb.start_server("bad", host="0.0.0.0")
    assert agentnb.list_servers() == []


def test_the_one_argv_builder_is_read_back_by_the_server_as_the_same_settings() -> None:
    argv = server_argv(host="127.0.0.1", port=4242, capacity=7, pool_type="redis", name="n",
                       redis_url="redis://localhost:1", max_len=9, max_expire_time=1.5, agent_dir="/tmp",
                       agent_modules=["a", "b"], model_config_path="/m.json", local_mode=False,
                       record_kind="daemon", log_path="/l.log", log_level="INFO", child=True, exit_with_parent=True)
    args = build_parser().parse_args(argv)
    assert (args.host, args.port, args.capacity, args.pool_type, args.name, args.redis_url) == \
        ("127.0.0.1", 4242, 7, "redis", "n", "redis://localhost:1")
    assert (args.max_len, args.max_expire_time, args.agent_dir, args.agent_module, args.model_config_path) == \
        (9, 1.5, "/tmp", ["a", "b"], "/m.json")
    assert (args.local_mode, args.record_kind, args.log_path, args.log_level, args.child, args.exit_with_parent) == \
        (False, "daemon", "/l.log", "INFO", True, True)
    defaults = build_parser().parse_args(server_argv())
    assert (defaults.host, defaults.port, defaults.local_mode, defaults.child) == ("localhost", 0, True, False)
