"""The suite's last line says what it skipped and why, grouped by reason; under CI=true a skip fails.

Each check runs pytest on a small generated test file, in a subprocess, with the suite's plugin
(``tests/skip_report.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers_runtime import TESTS

TINY_TESTS = '''
import pytest

def test_passes():
    pass

@pytest.fixture
def redis_server():
    pytest.skip("no redis-server: none on PATH")

def test_uses_redis(redis_server):
    pass

def test_uses_redis_too(redis_server):
    pass

def test_browser():
    pytest.skip("the browser test needs Debian's chromium")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    raise AssertionError
'''


def run_inner(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = TESTS
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "skip_report", "-p", "no:cacheprovider", "-q",
                           "test_tiny.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def summary(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("agentnb: ")]
    return line


def test_the_last_lines_say_what_was_skipped_and_why(tmp_path) -> None:
    done = run_inner(tmp_path, ci=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary(done.stdout) == (
        "agentnb: 1 passed, 1 xfailed; skipped 3: 2 in test_tiny.py (no redis-server: none on PATH); "
        "1 in test_tiny.py (the browser test needs Debian's chromium)")


@pytest.mark.parametrize("ci", ["true", "TRUE"])
def test_under_ci_a_skip_fails_naming_what_was_missing(tmp_path, ci: str) -> None:
    done = run_inner(tmp_path, ci=ci)
    assert done.returncode == 1, done.stdout + done.stderr
    # A skip in a fixture fails its setup: pytest counts that as an error.
    assert summary(done.stdout) == "agentnb: 1 passed, 1 failed, 2 errors, 1 xfailed; nothing skipped"
    assert "skipped under CI=true, where every test must run: no redis-server: none on PATH" in done.stdout


def test_the_suite_reports_with_this_plugin(request) -> None:
    assert request.config.pluginmanager.has_plugin("skip_report")
