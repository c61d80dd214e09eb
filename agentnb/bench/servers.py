"""Server processes for the benchmark, each stopped when its ``with`` block ends.

Agent servers are started exactly as child mode starts them
(``python -m agentnb.server`` through :func:`spawn_server`); the floor is
``python -m agentnb.bench.floor``. Both exit by themselves when the benchmark's
end of their stdin closes, so none outlives it even when it is killed.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from agentnb.launch.command import read_port, server_argv, spawn_server, stop_process

HOST = "127.0.0.1"


@dataclass
class AgentServerProcess:
    """A running ``python -m agentnb.server`` and how to reach it."""

    process: subprocess.Popen
    port: int
    token: str
    log: IO[bytes]
    host: str = HOST

    @property
    def to_dist(self) -> dict:
        """The ``to_dist=`` argument that places an object on this server (a fresh dict each time)."""
        return {"host": self.host, "port": self.port, "token": self.token}

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """The server's resident memory (VmRSS of /proc/PID/status), in KiB."""
        return read_rss_kib(self.pid)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the server wrote (for a failure's reason)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])


def read_rss_kib(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


@contextlib.contextmanager
def agent_server(capacity: int = 256) -> Iterator[AgentServerProcess]:
    """An agent server process with ``capacity`` executor threads, stopped on exit.

    ``--child`` keeps it out of the runtime directory (no record to clean up)
    and makes it exit when this process closes its stdin.
    """
    token = secrets.token_urlsafe(16)
    log = tempfile.TemporaryFile()
    args = server_argv(host=HOST, capacity=capacity, child=True)
    try:
        process, port = spawn_server(args, token, stdout=log, stderr=subprocess.STDOUT)
    except BaseException:
        log.close()
        raise
    server = AgentServerProcess(process, port, token, log)
    try:
        yield server
    finally:
        stop_process(process)
        log.close()


@contextlib.contextmanager
def floor_server() -> Iterator[int]:
    """A bare grpcio echo server process; yields its port."""
    process = subprocess.Popen([sys.executable, "-m", "agentnb.bench.floor", "--host", HOST],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert process.stdout is not None
        yield read_port(process.stdout.fileno(), process)
    finally:
        stop_process(process)
