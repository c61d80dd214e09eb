"""A server record is trusted only while the process that wrote it runs.

A record gives its server's token to whoever reads it (its user's clients). If the
server died and its pid went to another user's process (which may listen on the
freed port), or to a later process, the record must not be believed: no token is
handed out for it, and it is removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from attacker import ATTACKER, attacker_uid
from helpers_runtime import wait_for

from agentnb import DaemonRegistry
from agentnb.runtime_dir import ServerRecord, find_token, iter_records, read_record, write_record


@pytest.fixture
def attacker_process() -> Iterator[subprocess.Popen]:
    """A process of another user (as one whose pid was reused would be)."""
    attacker_uid()
    # setpriv execs the command itself: the pid is the other user's process.
    process = subprocess.Popen(["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
                                "sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait(10)


def _record(name: str, pid: int, **fields: object) -> ServerRecord:
    return ServerRecord(name=name, host="127.0.0.1", port=40123, pid=pid, token="secret-token", **fields)


def test_a_record_whose_pid_is_now_another_users_process_is_stale(attacker_process: subprocess.Popen) -> None:
    wait_for(lambda: _owner(attacker_process.pid) not in (None, os.getuid()), 10, what="the other user's process")
    path = write_record(_record("reused", attacker_process.pid, pid_started=1))
    assert path.exists()
    assert find_token("127.0.0.1", 40123) is None
    assert read_record("reused") is None and not path.exists()


def test_a_record_whose_pid_went_to_a_later_process_is_stale() -> None:
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        record = write_record(_record("later", later.pid))
        assert read_record("later") is not None  # the writer's start time: it is that process
        stale = _record("later", later.pid, pid_started=1)  # a process that started earlier had this pid
        write_record(stale)
        assert read_record("later") is None and not record.exists()
        assert [r.name for r in iter_records()] == []
    finally:
        later.kill()
        later.wait(10)


def test_a_live_daemon_is_trusted_and_found() -> None:
    """The check keeps what it should: a running server's own record."""
    registry = DaemonRegistry()
    try:
        started = registry.start(make_default=False)
        record = read_record(started.name)
        assert record is not None and record.pid_started > 0
        assert find_token(record.host, record.port) == record.token
    finally:
        registry.stop_all(grace=1)


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None
