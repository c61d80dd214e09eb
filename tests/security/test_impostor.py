"""Another local user listens where you expect your agent server (one not up yet, or one that
crashed and freed its port). The client must not reveal its token, nor send it an agent, nor
unpickle what it answers: the server proves it holds the token first (the handshake).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from agents_for_tests import Counter
from attacker import ATTACKER, attacker_uid

from agentnb import AuthenticationError
from agentnb.rpc.connection import ServerConnection

IMPOSTOR = pathlib.Path(__file__).with_name("impostor.py")


@pytest.fixture
def impostor() -> Iterator[tuple[int, pathlib.Path]]:
    """An impostor server run by the other user: its port, and the log of what it received."""
    attacker_uid()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="agentnb-impostor-"))
    os.chmod(folder, 0o1777)
    log = folder / "received.log"
    process = subprocess.Popen(["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
                                sys.executable, str(IMPOSTOR), str(log)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield port, log
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_an_impostor_gets_neither_the_token_nor_an_agent(impostor: tuple[int, pathlib.Path]) -> None:
    port, log = impostor
    token = "the-victims-token-" + os.urandom(8).hex()
    with pytest.raises(AuthenticationError, match="could not prove it holds the agent server's token"):
        Counter(41, to_dist={"host": "127.0.0.1", "port": port, "token": token})
    conn = ServerConnection.get("127.0.0.1", port, token)
    with pytest.raises(AuthenticationError):
        conn.info(timeout=10)
    received = log.read_text()
    assert received.startswith("Hello"), received  # it was asked to prove itself ...
    assert token not in received and token.encode().hex() not in received  # ... and got no token
    assert "Session" not in received and "unary" not in received  # nor a call, an agent or a request
