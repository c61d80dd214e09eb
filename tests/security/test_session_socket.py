"""The session socket: a client on the server's host calls through a Unix socket in the server's
private directory, and each side proves itself there before anything is unpickled
(:mod:`agentnb.wire.local_socket`)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from agents_for_tests import Counter
from attacker import ATTACKER, attacker_uid
from helpers_runtime import script_env, wait_for

from agentnb import AuthenticationError
from agentnb._proto import agentnb_pb2 as pb
from agentnb.rpc.connection import ServerConnection
from agentnb.wire import handshake, local_socket

CLIENT_NAME = "0123456789ab hostid 4242"


class _Planted:
    """Unpickling it writes a file: proof that the server unpickled what it was sent."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def _socket_of(server) -> str:
    path = ServerConnection.get(server.host, server.port, server.token).info().session_socket
    assert path.endswith(local_socket.SOCKET_NAME), path
    return path


def _raw(path: str) -> local_socket.Link:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return local_socket.Link(sock)


def _send_together(link: local_socket.Link, *messages: tuple[int, bytes]) -> None:
    """Write several messages in one write, so that all are in the server's socket buffer before it
    reads the first (a second write could meet a socket the server already closed)."""
    link.sock.sendall(b"".join(local_socket._HEADER.pack(kind, len(body)) + body for kind, body in messages))


def _ends(link: local_socket.Link) -> bool:
    """Whether the server closed the socket without a word more."""
    try:
        return link.receive() is None
    except ConnectionError:
        return True


def test_a_client_on_the_same_host_calls_through_the_session_socket(start_server, monkeypatch) -> None:
    server = start_server()
    counter = Counter(to_dist=server.to_dist)
    assert counter.add(2) == 2
    connection = ServerConnection.get(server.host, server.port, server.token)
    assert connection.transport == "session socket"
    ServerConnection.close_all()

    monkeypatch.setenv(local_socket.ENV_LOCAL_SOCKET, "0")  # turned off: gRPC's stream, same results
    again = ServerConnection.get(server.host, server.port, server.token)
    proxy = Counter(to_dist=server.to_dist)
    assert proxy.add(3) == 3
    assert again.transport == "gRPC stream"


def test_another_user_cannot_connect_to_the_session_socket(start_server) -> None:
    attacker_uid()
    server = start_server()
    counter = Counter(to_dist=server.to_dist)
    assert counter.add(1) == 1
    path = _socket_of(server)
    connect = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint('connected')"
    tried = subprocess.run(["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
                            sys.executable, "-c", connect, path], capture_output=True, text=True, timeout=60)
    assert tried.returncode != 0 and "PermissionError" in tried.stderr, tried
    assert counter.add(1) == 2  # the owner is served as before


def test_frames_before_the_proof_are_never_unpickled(start_server, tmp_path) -> None:
    server = start_server()
    counter = Counter(to_dist=server.to_dist)
    assert counter.add(1) == 1
    planted = tmp_path / "planted"
    payload = pickle.dumps(_Planted(str(planted)))
    frame = pb.ClientFrame(calls=[pb.Call(seq=1, kind=pb.CREATE, agent_id="x", payload=payload)]).SerializeToString()

    # A frame instead of the hello, and a frame instead of the proof: the server closes the socket.
    link = _raw(_socket_of(server))
    link.send(local_socket.FRAME, frame)
    assert _ends(link)
    link = _raw(_socket_of(server))
    link.send(local_socket.HELLO, handshake.new_nonce() + CLIENT_NAME.encode())
    link.expect(local_socket.HELLO, "server's hello")
    link.send(local_socket.FRAME, frame)
    assert _ends(link)

    # A proof made with the wrong token, the frame right behind it: refused before the frame is read.
    link = _raw(_socket_of(server))
    client_nonce = handshake.new_nonce()
    link.send(local_socket.HELLO, client_nonce + CLIENT_NAME.encode())
    body = link.expect(local_socket.HELLO, "server's hello")
    server_nonce = body[:2 * handshake.NONCE_BYTES]
    forged = handshake._mac(b"not the token", handshake._CLIENT_PROOF, client_nonce, server_nonce)
    forged_proof = f"{client_nonce.hex()}:{server_nonce.hex()}:{forged.hex()}".encode()
    _send_together(link, (local_socket.PROOF, forged_proof), (local_socket.FRAME, frame))
    assert _ends(link)

    assert not planted.exists()
    assert counter.add(1) == 2  # the server and its agents are unhurt


def test_a_replayed_proof_is_refused(start_server) -> None:
    server = start_server()
    path = _socket_of(server)
    # A client's whole handshake, as someone reading the socket would see it...
    link = _raw(path)
    client_nonce = handshake.new_nonce()
    link.send(local_socket.HELLO, client_nonce + CLIENT_NAME.encode())
    body = link.expect(local_socket.HELLO, "server's hello")
    nonce_bytes = 2 * handshake.NONCE_BYTES
    metadata = handshake.client_metadata(server.token, client_nonce, body[:nonce_bytes], body[nonce_bytes:], path)
    proof = metadata[0][1].encode()
    link.send(local_socket.PROOF, proof)
    link.expect(local_socket.READY, "server's ready")
    link.close()
    # ...sent again, with the same nonce, without the token: the server gave a new nonce, so it is refused.
    replay = _raw(path)
    replay.send(local_socket.HELLO, client_nonce + CLIENT_NAME.encode())
    replay.expect(local_socket.HELLO, "server's hello")
    replay.send(local_socket.PROOF, proof)
    assert _ends(replay)


def test_a_client_sends_nothing_but_its_hello_to_a_socket_that_cannot_prove_itself(tmp_path) -> None:
    path = str(tmp_path / local_socket.SOCKET_NAME)
    listener = local_socket.listen(path)
    received: list[tuple[int, bytes]] = []

    def impostor() -> None:
        sock, _ = listener.accept()
        link = local_socket.Link(sock)
        received.append(link.expect(local_socket.HELLO, "client's hello"))
        link.send(local_socket.HELLO, os.urandom(3 * handshake.NONCE_BYTES))  # a nonce and a made-up proof
        while (message := link.receive()) is not None:
            received.append(message)

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    try:
        with pytest.raises(AuthenticationError, match="could not prove"):
            local_socket.connect(path, "the token", CLIENT_NAME, "unix:" + path, timeout=30)
        thread.join(30)
        assert not thread.is_alive()
        assert len(received) == 1 and received[0].endswith(CLIENT_NAME.encode())  # the hello only: no proof, no frame
    finally:
        listener.close()


FORKING_CLIENT = textwrap.dedent("""
    import json, multiprocessing, sys, time
    from agents_for_tests import Counter

    counter = Counter(to_dist=json.loads(sys.argv[1]))  # owned: it goes when this process is gone
    assert counter.add(1) == 1
    helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(300,))
    helper.start()
    print(helper.pid, flush=True)
    time.sleep(300)
""")


def test_a_killed_clients_agents_go_though_its_forked_helper_lives(start_server, tmp_path) -> None:
    """A fork inherits the client's session socket: unless the fork closes it, a helper that outlives the
    client keeps the session open, and the server never learns that the client is gone."""
    server = start_server()
    script = tmp_path / "client.py"
    script.write_text(FORKING_CLIENT)
    address = json.dumps({"host": server.host, "port": server.port, "token": server.token})
    client = subprocess.Popen([sys.executable, str(script), address], stdout=subprocess.PIPE, text=True,
                              env=script_env())
    helper = None
    try:
        helper = int(client.stdout.readline())
        connection = ServerConnection.get(server.host, server.port, server.token)
        assert [agent.class_name for agent in connection.list_agents()] == ["agents_for_tests.Counter"]
        client.kill()
        client.wait(10)
        wait_for(lambda: not connection.list_agents(), 20, what="the killed client's agent to be deleted")
    finally:
        if helper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper, signal.SIGKILL)
        client.kill()
        client.wait(10)
