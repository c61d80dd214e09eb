"""One version everywhere (package, pyproject, CHANGELOG, GetInfo, %agent_server list), and a client
and a server of different versions: refused with both versions named, or working when only their
patch releases differ.

A server "of another version" is a real server process started through a wrapper that sets
``agentnb.__version__`` before it runs ``python -m agentnb.server``.
"""

from __future__ import annotations

import logging
import pathlib
import re
import subprocess
import sys

import grpc
import pytest
import tomllib
from agents_for_tests import Counter
from helpers_runtime import REPO

import agentnb
from agentnb import VersionMismatch
from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire.handshake import new_nonce
from agentnb.wire.protocol import SERVICE
from kernel_ext.daemon_views import DaemonDetail, DaemonTable

MAJOR, MINOR, _ = agentnb.__version__.split(".", 2)
NEXT_MINOR = f"{MAJOR}.{int(MINOR) + 1}.0"
NEXT_PATCH = f"{MAJOR}.{MINOR}.99"

# Run as: python -P -c AS_VERSION VERSION CHECKS python -P -m agentnb.server ARGS... (the launcher's command
# line follows the wrapper's). CHECKS "no" makes a server that checks no client's version and tells
# none of its own when VERSION is empty: a server from before the version exchange.
AS_VERSION = """
import runpy, sys
import agentnb
from agentnb.wire import versions
agentnb.__version__, checks = sys.argv[1], sys.argv[2]
if checks == "no":
    versions.compatible = lambda client, server: True
command = sys.argv[3:]
sys.argv = ["agentnb.server", *command[command.index("agentnb.server") + 1:]]
runpy.run_module("agentnb.server", run_name="__main__")
"""


def as_version(version: str, checks: bool = True) -> list[str]:
    """The ``wrapper`` of a server process that runs as agentnb ``version``."""
    return [sys.executable, "-P", "-c", AS_VERSION, version, "yes" if checks else "no"]


def test_the_package_pyproject_and_changelog_name_one_version() -> None:
    pyproject = tomllib.loads(pathlib.Path(REPO, "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agentnb.__version__"}
    changelog = pathlib.Path(REPO, "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, flags=re.MULTILINE)
    assert released, "CHANGELOG.md names no version as '## [X.Y.Z] - YYYY-MM-DD'"
    assert released[0] == agentnb.__version__, "the CHANGELOG's latest version is not agentnb.__version__"


def test_the_server_command_line_prints_the_version() -> None:
    for command in ([sys.executable, "-m", "agentnb.server", "--version"], [sys.executable, "-c",
                    "import sys; from agentnb.server.cli import as_server_main; sys.exit(as_server_main())",
                    "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert (done.returncode, done.stdout) == (0, f"agentnb {agentnb.__version__}\n"), done.stderr


def test_a_server_reports_this_version_and_the_daemon_list_shows_it(start_server) -> None:
    server = start_server("--name", "lab", "--record-kind", "daemon")
    assert server.connection().info().version == agentnb.__version__
    [status] = [s for s in agentnb.list_servers() if s.record.name == "lab"]
    assert status.reachable and status.version == agentnb.__version__
    header, row = repr(DaemonTable([status])).splitlines()
    assert header.split()[-2:] == ["version", "default"]
    assert row.split()[-1] == agentnb.__version__  # not the default server of this process: no '*'


def test_a_server_of_another_minor_version_is_refused_naming_both(start_server, tmp_path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = start_server("--name", "newer", "--record-kind", "daemon", wrapper=as_version(NEXT_MINOR),
                              stdout=out, stderr=out)
    with pytest.raises(VersionMismatch) as refused:
        Counter(0, to_dist=server.to_dist)
    message = str(refused.value)
    assert f"this client runs agentnb {agentnb.__version__}" in message
    assert f"the agent server 'newer' at 127.0.0.1:{server.port} runs agentnb {NEXT_MINOR}" in message
    assert "same major.minor version" in message
    assert (refused.value.client_version, refused.value.server_version) == (agentnb.__version__, NEXT_MINOR)

    # The server is still up, logged the refusal, and the daemon list says which version it runs.
    assert server.process.poll() is None
    assert f"refused a client of agentnb {agentnb.__version__}: this server runs agentnb {NEXT_MINOR}" \
        in log.read_text()
    [status] = [s for s in agentnb.list_servers() if s.record.name == "newer"]
    assert not status.reachable and status.version == NEXT_MINOR and "same major.minor" in status.error
    row = repr(DaemonTable([status])).splitlines()[1]
    assert "daemon (other version)" in row and f"{NEXT_MINOR} (here {agentnb.__version__})" in row
    assert "same major.minor" in repr(DaemonDetail(status))


def test_a_client_that_does_not_tell_its_version_is_refused_with_the_servers(server) -> None:
    """As a client from before the version exchange would be: gRPC's error names the server's version."""
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        hello = channel.unary_unary(f"/{SERVICE}/Hello", request_serializer=pb.HelloRequest.SerializeToString,
                                    response_deserializer=pb.HelloReply.FromString)
        with pytest.raises(grpc.RpcError) as refused:
            hello(pb.HelloRequest(client_nonce=new_nonce()), timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"this agent server runs agentnb {agentnb.__version__}" in refused.value.details()
    assert "older than 0.2" in refused.value.details()


def test_a_server_from_before_the_version_exchange_is_refused_by_the_client(start_server) -> None:
    """A server that checks nothing and tells no version: the client refuses it itself."""
    server = start_server(wrapper=as_version("", checks=False))
    with pytest.raises(VersionMismatch, match=r"runs an agentnb older than 0\.2 \(one that does not tell its"):
        server.connection().info()


def test_a_patch_release_apart_works_with_a_warning(start_server, caplog) -> None:
    server = start_server(wrapper=as_version(NEXT_PATCH))
    with caplog.at_level(logging.WARNING, logger="agentnb.wire.versions"):
        counter = Counter(0, to_dist=server.to_dist)
        assert counter.add(3) == 3
    assert server.connection().info().version == NEXT_PATCH
    [warning] = [r.getMessage() for r in caplog.records if r.name == "agentnb.wire.versions"]
    assert f"this client runs agentnb {agentnb.__version__}" in warning and f"agentnb {NEXT_PATCH}" in warning
    assert "they work together" in warning
