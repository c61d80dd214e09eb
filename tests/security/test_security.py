"""Trust: tokens on every call, records readable by their owner only, loopback by default, TLS."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import grpc
import pytest

from agentnb import AgentBase, AuthenticationError, ServerUnavailable
from agentnb._proto import agentnb_pb2 as pb
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.rpc_object import RpcObject
from agentnb.runtime_dir import iter_records
from agentnb.wire import codec


class Counter(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.count = 0

    def bump(self) -> int:
        self.count += 1
        return self.count


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_wrong_or_missing_token_cannot_create_or_call(server, tmp_path):
    agent = Counter("c", to_dist=server.to_dist)
    assert agent.bump() == 1

    marker = tmp_path / "unpickled"
    payload = codec.dumps((Counter, ("evil",), {"x": _TouchOnUnpickle(str(marker))}))
    wrong = ServerConnection(server.host, server.port, "not-the-token")
    with pytest.raises(AuthenticationError):
        future = wrong.submit(pb.CREATE, "evil-agent", payload=payload)
        future.wait(30)
        raise future.error
    assert not marker.exists(), "the server unpickled a payload from a caller with a wrong token"
    stolen = RpcObject(wrong, agent.agent_id, "Counter", {"bump": "sync"})
    with pytest.raises(AuthenticationError):
        stolen.bump()
    wrong.close()

    # No token at all, on a raw channel: every RPC is refused.
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        info = channel.unary_unary("/agentnb.AgentServer/GetInfo")
        with pytest.raises(grpc.RpcError) as err:
            info(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        shutdown = channel.unary_unary("/agentnb.AgentServer/Shutdown")
        with pytest.raises(grpc.RpcError) as err:
            shutdown(pb.ShutdownRequest(grace=0).SerializeToString(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The server is up, the agent untouched, and the right token still works.
    assert agent.bump() == 2
    assert server.process.poll() is None
    assert server.connection().info().agents == 1

    # With the right token the same payload is unpickled: the marker check above can fail.
    right = server.connection().submit(pb.CREATE, "evil-agent", payload=payload)
    right.wait(30)
    assert marker.exists()


def test_stopping_a_server_needs_its_token(server):
    wrong = ServerConnection(server.host, server.port, "nope")
    with pytest.raises(AuthenticationError):
        wrong.shutdown(grace=0)
    wrong.close()
    assert server.connection().info().pid == server.process.pid
    server.connection().shutdown(grace=0)
    assert server.process.wait(30) == 0


def test_token_is_not_on_the_command_line_nor_in_the_log(start_server, tmp_path):
    log = open(tmp_path / "server.log", "w")
    srv = start_server("--log-level", "DEBUG", stdout=log, stderr=subprocess.STDOUT)
    with open(f"/proc/{srv.process.pid}/cmdline", "rb") as f:
        assert srv.token.encode() not in f.read()
    bad = ServerConnection(srv.host, srv.port, "wrong-token-value")
    with pytest.raises(AuthenticationError, match="could not prove"):  # the client stops at the handshake
        bad.info()
    bad.close()
    with grpc.insecure_channel(f"{srv.host}:{srv.port}") as channel:  # a call without a proof
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary("/agentnb.AgentServer/GetInfo")(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    Counter("c", to_dist=srv.to_dist).bump()
    srv.connection().shutdown(grace=0)
    srv.process.wait(30)
    log.close()
    text = (tmp_path / "server.log").read_text()
    assert "refused a call" in text  # the refusal is logged...
    assert srv.token not in text and "wrong-token-value" not in text  # ...but never a token


def test_server_record_is_private_and_gives_the_token_to_this_user(start_server, runtime_dir):
    srv = start_server("--name", "rec-test")
    records = {r.name: r for r in iter_records()}
    assert records["rec-test"].port == srv.port
    path = os.path.join(runtime_dir, "servers", "rec-test.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(runtime_dir).st_mode) == 0o700
    # Independent mode without a token: found in the runtime directory.
    agent = Counter("c", to_dist={"host": "localhost", "port": srv.port})
    assert agent.bump() == 1


def test_binding_beyond_loopback_needs_explicit_consent():
    result = subprocess.run([sys.executable, "-m", "agentnb.server", "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--no-local-mode" in result.stderr


def test_tls_server_serves_tls_clients_only(start_server, tls_files):
    cert, key = tls_files
    srv = start_server("--tls-cert", cert, "--tls-key", key)
    agent = Counter("c", to_dist={**srv.to_dist, "tls_ca": cert})
    assert agent.bump() == 1
    assert agent.bump() == 2
    plain = ServerConnection(srv.host, srv.port, srv.token)
    with pytest.raises(ServerUnavailable):
        plain.info(timeout=10)
    plain.close()
