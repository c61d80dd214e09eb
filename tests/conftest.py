"""Fixtures shared by the whole suite, in every folder: isolated runtime folders, real server
processes, and (through ``pytest_plugins``) real kernels, the daemon reaper, Redis and JupyterLab,
and the run's last line: what it skipped and why (``skip_report``).

Clean-up that must hold for every test is autouse here: each test gets its own runtime
directory (``runtime_dir``), and when it ends its connections and child servers are closed
(``_stop_children``) and every agent server recorded in its runtime directory is stopped
(``reap_daemons``, in kernel_fixtures).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from helpers_runtime import LONG_CALL_SECONDS, REPO

from agentnb.launch.child_servers import stop_child_servers
from agentnb.launch.command import spawn_server
from agentnb.rpc.connection import ServerConnection

# Fixture modules of the whole suite (tests/ is on sys.path: this file's folder), and the run's
# summary line (what it skipped and why; under CI=true a skip fails).
pytest_plugins = ["kernel_fixtures", "redis_fixtures", "browser_fixtures", "engines_fixtures", "skip_report"]


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test gets its own runtime directory: no server record leaks between tests."""
    path = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("AGENTNB_RUNTIME_DIR", str(path))
    monkeypatch.delenv("AGENTNB_TOKEN", raising=False)
    yield str(path)


@pytest.fixture(autouse=True)
def _stop_children() -> Iterator[None]:
    """Child servers and connections made by a test end with it."""
    yield
    ServerConnection.close_all()
    stop_child_servers()


@dataclass
class ServerProcess:
    """An agent server running in its own process (``python -m agentnb.server``)."""

    process: subprocess.Popen
    host: str
    port: int
    token: str

    @property
    def to_dist(self) -> dict:
        return {"host": self.host, "port": self.port, "token": self.token}

    def connection(self) -> ServerConnection:
        return ServerConnection.get(self.host, self.port, self.token)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """A factory of real agent-server processes; all are killed when the test ends."""
    started: list[ServerProcess] = []

    def start(*args: str, token: str | None = None, port: int = 0, **popen_kwargs) -> ServerProcess:
        token = token or secrets.token_urlsafe(16)
        process, real_port = spawn_server(["--host", "127.0.0.1", "--port", str(port), *args], token,
                                          **popen_kwargs)
        server = ServerProcess(process, "127.0.0.1", real_port, token)
        started.append(server)
        return server

    yield start
    ServerConnection.close_all()
    for server in started:
        server.kill()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """One agent server process with capacity 16."""
    return start_server("--capacity", "16")


@pytest.fixture
def two_servers(start_server: Callable[..., ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    """Two agent server processes."""
    return start_server(), start_server()


@pytest.fixture
def tls_files(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key: (cert, key) paths."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


# -- the long call ---------------------------------------------------------------------------
# An async call of LONG_CALL_SECONDS must simply return its value (no hidden deadline).
# It starts when collection finishes, in its own process, so it runs while the rest of
# the suite does; the test marked long_call collects its result at the end.

LONG_CALL_SCRIPT = f"""
import json, time
from agentnb import AgentBase, async_func

class Sleeper(AgentBase):
    @async_func
    def nap(self, seconds):
        time.sleep(seconds)
        return f"woke after {{seconds}} s"

start = time.monotonic()
res = Sleeper("sleeper", to_dist=True).nap({LONG_CALL_SECONDS})
value = res.result()
print(json.dumps({{"value": value, "elapsed": time.monotonic() - start}}))
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The long call is collected last, so that the rest of the suite runs meanwhile.
    items.sort(key=lambda item: item.get_closest_marker("long_call") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("long_call") for item in session.items):
        session.config._agentnb_long_call = subprocess.Popen(  # type: ignore[attr-defined]
            [sys.executable, "-c", LONG_CALL_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long_call: collects the long call started at collection time")
    config.addinivalue_line("markers", "slow: builds or installs things (a wheel, venvs); -m 'not slow' skips")


def pytest_unconfigure(config: pytest.Config) -> None:
    process = getattr(config, "_agentnb_long_call", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def long_call(request: pytest.FixtureRequest) -> subprocess.Popen:
    return request.config._agentnb_long_call  # type: ignore[attr-defined]
