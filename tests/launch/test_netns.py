"""Several hosts, for real, on one machine: two network namespaces joined by a veth pair.

The agent server runs in one namespace, bound to its veth address (``--no-local-mode``);
the client script runs in the other, where the server's loopback is not its loopback
and the runtime directory holds no token: it reaches the server only through the
veth link, with the token it is given, as a client on another machine would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from helpers_runtime import script_env, write_script

from agentnb.launch.command import spawn_server

IP = shutil.which("ip")


@dataclass
class Namespaces:
    """Two network namespaces, ``server_ns`` (``server_ip``) and ``client_ns`` (``client_ip``)."""

    server_ns: str
    client_ns: str
    server_ip: str
    client_ip: str

    def exec_prefix(self, namespace: str) -> list[str]:
        return [IP or "ip", "netns", "exec", namespace]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IP or "ip", *args], capture_output=True, text=True, timeout=30)


def _must(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    """Create the two namespaces and their veth link; remove them whatever happens."""
    if IP is None:
        pytest.skip("`ip` (iproute2) is not installed; Debian: apt-get install iproute2")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    tag = secrets.token_hex(3)
    subnet = f"10.231.{int(tag, 16) % 250 + 1}"
    spaces = Namespaces(f"anb-{tag}-srv", f"anb-{tag}-cli", f"{subnet}.1", f"{subnet}.2")
    added = _ip("netns", "add", spaces.server_ns)
    if added.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {added.stderr.strip()}")
    try:
        _must("netns", "add", spaces.client_ns)
        veth_server, veth_client = f"anbs{tag}", f"anbc{tag}"  # at most 15 characters
        _must("link", "add", veth_server, "type", "veth", "peer", "name", veth_client)
        for veth, namespace, address in ((veth_server, spaces.server_ns, spaces.server_ip),
                                         (veth_client, spaces.client_ns, spaces.client_ip)):
            _must("link", "set", veth, "netns", namespace)
            _must("-n", namespace, "addr", "add", f"{address}/24", "dev", veth)
            _must("-n", namespace, "link", "set", veth, "up")
            _must("-n", namespace, "link", "set", "lo", "up")
        yield spaces
    finally:
        # Deleting a namespace deletes the veth end inside it, and with it its peer.
        for namespace in (spaces.server_ns, spaces.client_ns):
            _ip("netns", "del", namespace)


@pytest.fixture
def server_in(namespaces: Namespaces) -> Iterator[Callable[..., int]]:
    """Start agent servers in the server namespace; return their port. All are killed at the end."""
    processes: list[subprocess.Popen] = []

    def start(token: str, *args: str) -> int:
        process, port = spawn_server(["--port", "0", "--name", f"netns-{secrets.token_hex(3)}", *args], token,
                                     wrapper=namespaces.exec_prefix(namespaces.server_ns),
                                     stdout=subprocess.DEVNULL)
        processes.append(process)
        return port

    yield start
    for process in processes:
        process.kill()
        process.wait(10)


@pytest.fixture
def tls_pair(tmp_path, namespaces: Namespaces) -> tuple[str, str]:
    """A self-signed certificate for the server namespace's address, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key,
                    "-out", cert, "-subj", "/CN=agentnb-netns",
                    "-addext", f"subjectAltName=IP:{namespaces.server_ip}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


CLIENT = """
import json, os, sys
from agents_for_tests import Worker
from agentnb import AuthenticationError, Msg, ServerUnavailable

host, port, loopback_port, tls_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
token, tls_ca = os.environ["REMOTE_TOKEN"], os.environ["REMOTE_CA"]
out = {}
worker = Worker("far", to_dist={"host": host, "port": port, "token": token})
out["pid"] = worker.pid()
out["reply"] = worker.reply(Msg("user", content="over the veth")).result(timeout=60).content
for case, options in {
    "wrong token": {"host": host, "port": port, "token": "not-the-token"},
    "no token": {"host": host, "port": port},
    "loopback server": {"host": host, "port": loopback_port, "token": token},
    "own loopback": {"host": "127.0.0.1", "port": loopback_port, "token": token},
}.items():
    try:
        Worker("intruder", to_dist=options)
        out[case] = "reached"
    except (AuthenticationError, ServerUnavailable) as exc:
        out[case] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        out[case] = f"other {type(exc).__name__}: {exc}"
tls_worker = Worker("tls", to_dist={"host": host, "port": tls_port, "token": token, "tls_ca": tls_ca})
out["tls pid"] = tls_worker.pid()
print(json.dumps(out))
"""


def test_client_in_another_namespace_reaches_a_server_bound_beyond_loopback(
        namespaces: Namespaces, server_in: Callable[..., int], tls_pair: tuple[str, str], tmp_path) -> None:
    token = secrets.token_urlsafe(16)
    port = server_in(token, "--host", namespaces.server_ip, "--no-local-mode")
    loopback_port = server_in(token)  # the default: bound to loopback (of the server namespace)
    cert, key = tls_pair
    tls_port = server_in(token, "--host", namespaces.server_ip, "--no-local-mode", "--tls-cert", cert,
                         "--tls-key", key)

    script = write_script(tmp_path, CLIENT, "client.py")
    client_runtime = tmp_path / "client-runtime"  # another host: no server records, no tokens there
    env = script_env(REMOTE_TOKEN=token, REMOTE_CA=cert, AGENTNB_RUNTIME_DIR=str(client_runtime))
    env.pop("AGENTNB_TOKEN", None)
    done = subprocess.run([*namespaces.exec_prefix(namespaces.client_ns), sys.executable, script,
                           namespaces.server_ip, str(port), str(loopback_port), str(tls_port)],
                          capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["reply"] == "far(over the veth)"
    assert out["pid"] != os.getpid() and out["tls pid"] != out["pid"]
    assert out["wrong token"].startswith("AuthenticationError") and "could not prove it holds" in out["wrong token"]
    assert out["no token"].startswith("other AgentServerError") and "no token" in out["no token"]
    assert out["loopback server"].startswith("ServerUnavailable"), out["loopback server"]
    assert out["own loopback"].startswith("ServerUnavailable"), out["own loopback"]


def test_binding_the_veth_address_needs_no_local_mode(namespaces: Namespaces) -> None:
    done = subprocess.run([*namespaces.exec_prefix(namespaces.server_ns), sys.executable, "-m", "agentnb.server",
                           "--host", namespaces.server_ip, "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--no-local-mode" in done.stderr
