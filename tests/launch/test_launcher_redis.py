"""A server that cannot reach its Redis says so to whoever started it (launcher, daemon registry)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from helpers_runtime import free_port

from agentnb import DaemonError, DaemonOptions, DaemonRegistry
from agentnb.errors import AgentServerError
from agentnb.runtime_dir import iter_records
from agentnb.server.launcher import RpcAgentServerLauncher


@pytest.fixture
def closed_redis_url() -> Iterator[str]:
    """The URL of a Redis that is not there: a loopback port held bound but not listening,
    so that nothing else can take it while the test runs and every connection is refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{holder.getsockname()[1]}/0"


@pytest.mark.parametrize("in_subprocess", [True, False], ids=["subprocess", "in-process"])
def test_launcher_error_names_the_redis_url_and_the_cause(closed_redis_url: str, in_subprocess: bool) -> None:
    launcher = RpcAgentServerLauncher(port=0, pool_type="redis", redis_url=closed_redis_url)
    try:
        with pytest.raises(AgentServerError) as failure:
            launcher.launch(in_subprocess=in_subprocess)
    finally:
        launcher.shutdown(0)
    message = str(failure.value)
    assert closed_redis_url in message
    assert "could not reach Redis" in message and "refused" in message.lower()
    assert list(iter_records()) == [], "a server that did not start leaves no record"


def test_launcher_error_without_a_redis_url_names_the_option() -> None:
    launcher = RpcAgentServerLauncher(port=0, pool_type="redis")
    try:
        with pytest.raises(AgentServerError, match="redis_url"):
            launcher.launch()
    finally:
        launcher.shutdown(0)


def test_other_start_failures_keep_their_own_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        launcher = RpcAgentServerLauncher(host="127.0.0.1", port=taken.getsockname()[1])
        try:
            with pytest.raises(AgentServerError, match="cannot listen on 127.0.0.1"):
                launcher.launch()
        finally:
            launcher.shutdown(0)


def test_daemon_error_names_the_redis_url(registry: DaemonRegistry) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(DaemonError) as failure:
        registry.start(DaemonOptions(name="needs-redis", pool_type="redis", redis_url=url))
    assert f"the agent server failed to start: the Redis result pool at {url} is unavailable" in str(failure.value)
