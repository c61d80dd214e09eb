"""A server that stops answering (SIGSTOP, a frozen VM, a cut network) is noticed within seconds.

Calls waiting on it, and the next ones, raise ServerUnavailable instead of hanging: on gRPC's
stream, the connection's keepalive pings find that nothing answers; on the session socket of a
server on the client's host, the client finds the server's process stopped.
"""

from __future__ import annotations

import signal
import time

import pytest
from agents_for_tests import Counter
from helpers_runtime import wait_for

from agentnb import ServerUnavailable
from agentnb.rpc.connection import ServerConnection
from agentnb.wire import local_socket

NOTICED_WITHIN = 30.0  # seconds; keepalive finds it in about 10 (the README's "within seconds")


@pytest.mark.parametrize("transport", ["session socket", "gRPC stream"])
def test_a_call_to_a_stopped_server_fails_within_seconds(start_server, monkeypatch, transport: str) -> None:
    if transport == "gRPC stream":
        monkeypatch.setenv(local_socket.ENV_LOCAL_SOCKET, "0")
    server = start_server()
    counter = Counter(to_dist=server.to_dist)
    assert counter.add(1) == 1
    assert ServerConnection.get(server.host, server.port, server.token).transport == transport
    server.process.send_signal(signal.SIGSTOP)
    try:
        # The signal is delivered asynchronously: a call made before the process stops is answered.
        wait_for(lambda: local_socket.process_stopped(server.process.pid), what="the server to stop")
        started = time.monotonic()
        with pytest.raises(ServerUnavailable):
            counter.add(1)
        took = time.monotonic() - started
        assert took < NOTICED_WITHIN, f"the stopped server was noticed only after {took:.0f} s"
        print(f"noticed after {took:.1f} s")
    finally:
        server.process.send_signal(signal.SIGCONT)
