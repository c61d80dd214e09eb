"""DaemonRegistry used from plain Python (no kernel): naming, failures, --all, other processes' servers."""

from __future__ import annotations

import threading

import pytest
from helpers_runtime import free_port

from agentnb import DaemonError, DaemonOptions, DaemonRegistry
from agentnb.rpc.placement import default_server
from agentnb.runtime_dir import pid_alive, read_record


def test_names_are_made_up_and_unique_across_concurrent_starts(registry: DaemonRegistry) -> None:
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(registry.start(make_default=False).name))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(names) == ["daemon-1", "daemon-2"]
    assert default_server() is None


def test_a_failed_start_says_why_and_leaves_nothing(registry: DaemonRegistry) -> None:
    first = registry.start(DaemonOptions(name="first", port=free_port()))  # on a port: "second" wants it too
    assert default_server() is not None and default_server()[1] == first.port
    with pytest.raises(DaemonError, match="did not start") as failure:
        registry.start(DaemonOptions(name="second", port=first.port))
    assert "cannot listen" in str(failure.value), "the end of the server's log explains it"
    assert read_record("second") is None
    with pytest.raises(DaemonError, match="already running"):
        registry.start(DaemonOptions(name="first"))


def test_stop_all_leaves_servers_that_are_not_daemons(registry: DaemonRegistry, start_server) -> None:
    independent = start_server("--name", "independent")
    daemon = registry.start(DaemonOptions(name="mine"), make_default=False)
    assert [r.name for r in registry.records()] == ["independent", "mine"]
    assert registry.stop_all() == ["mine"]
    assert not pid_alive(daemon.pid)
    assert read_record("independent") is not None and independent.process.poll() is None
