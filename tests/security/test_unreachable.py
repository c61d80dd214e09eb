"""Servers of one user on one machine (child servers, daemons) listen where no other user can connect:
a Unix socket in the user's runtime directory (0700), not a loopback port."""

from __future__ import annotations

import subprocess
import sys

import pytest
from agents_for_tests import Counter
from attacker import ATTACKER, attacker_uid

import agentnb
from agentnb.runtime_dir import is_unix

CONNECT = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint('connected')"


def _attacker_connects(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
                           sys.executable, "-c", CONNECT, path], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["child", "daemon"])
def test_another_user_cannot_connect_to_your_servers(kind: str) -> None:
    attacker_uid()
    try:
        if kind == "daemon":
            agentnb.start_server("mine")
        counter = Counter(to_dist=True)
        assert counter.add(1) == 1
        host = repr(counter).rsplit(" at ", 1)[1].rstrip(">")
        assert is_unix(host), host
        tried = _attacker_connects(host[len("unix:"):])
        assert tried.returncode != 0 and "PermissionError" in tried.stderr, tried
        assert counter.add(1) == 2  # and the owner is served as before
    finally:
        agentnb.clear_default_server()
        agentnb.stop_server(all=True, grace=1)
