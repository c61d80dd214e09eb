"""Anyone who can write to the Redis of a result store (the README's example has no password) must
not be able to make the server, or a client reading a result, unpickle something of theirs.

Each stored result carries a MAC under a key derived from the server's token; a result whose
MAC does not match is refused with a clear error, and nothing of it is unpickled. The attacker
is another Unix user, talking to Redis on loopback as any local user can.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from agents_for_tests import Worker
from attacker import ATTACKER, attacker_uid
from redis_fixtures import RedisServer

from agentnb import AgentServerError

FORGE = textwrap.dedent("""
    import pickle, socket, sys

    class Payload:
        def __reduce__(self):
            return (open, (sys.argv[3], "w"))

    def command(*args):  # Redis's wire protocol, by hand: any local user can do this
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        out = b"*%d\\r\\n" % len(parts) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(p), p) for p in parts)
        conn.sendall(out)
        return conn.recv(65536)

    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    key = f"agentnb:default:task:{sys.argv[2]}"
    assert command("HGET", key, "state") == b"$4\\r\\ndone\\r\\n"
    command("HSET", key, "payload", pickle.dumps(Payload()), "status", 1)
    command("HDEL", key, "buffers")
""")


def test_a_result_replaced_in_redis_is_refused_unread(start_server, redis_server: RedisServer) -> None:
    attacker_uid()
    server = start_server("--pool-type", "redis", "--redis-url", redis_server.url)
    agent = Worker("W0", to_dist=server.to_dist)
    kept = agent.sleep_for(0.01)
    assert kept.result(30) == 0.01
    folder = pathlib.Path(tempfile.mkdtemp(prefix="agentnb-forge-"))
    try:
        os.chmod(folder, 0o1777)
        marker = folder / "unpickled"
        script = folder / "forge.py"
        script.write_text(FORGE)
        forged = subprocess.run(["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
                                 sys.executable, str(script), str(redis_server.port), kept.task_id, str(marker)],
                                capture_output=True, text=True, timeout=60)
        assert forged.returncode == 0, forged.stderr

        reference = pickle.loads(pickle.dumps(kept.as_reference()))  # fetches the stored result from the server
        with pytest.raises(AgentServerError, match="integrity check") as refused:
            reference.result(30)
        assert kept.task_id in str(refused.value)
        assert not marker.exists(), "a forged result was unpickled"
        assert agent.sleep_for(0.02).result(30) == 0.02  # the server and its other results are fine
    finally:
        shutil.rmtree(folder, ignore_errors=True)
