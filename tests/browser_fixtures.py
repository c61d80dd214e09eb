"""Fixtures for the end-to-end browser test: a real JupyterLab and Debian's chromium.

``jupyterlab`` serves a temporary folder on 127.0.0.1 (a port the OS picks,
a random token) with its own Jupyter config, data, runtime and settings
folders, so nothing of the user's is read or written. ``browser_page`` is a
page of Debian's chromium (``/usr/bin/chromium``) driven by Playwright; no
browser is ever downloaded.

Both are skipped, naming what is missing, when chromium, Playwright or
JupyterLab is not installed, except under CI (``CI=true``), where a missing
piece fails the test instead: CI installs all of them (``.ci/run``).

Teardown, whatever the test did: JupyterLab is asked to shut down (which
stops its kernels), then its process group is killed if still there, then
any kernel left behind is killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers_runtime import wait_for

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out to the network or needs a GPU or a sandbox (root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"
START_TIMEOUT = 90.0  # JupyterLab's start, on a loaded 2-core machine
STOP_GRACE = 20.0  # for JupyterLab to shut its kernels down after /api/shutdown
ACTION_TIMEOUT_MS = 60_000  # Playwright's default for every page action

# The server's settings for the test: loopback, a port the OS picks, no
# extension manager calling PyPI, no terminals.
SERVER_CONFIG: dict[str, dict[str, Any]] = {
    "ServerApp": {"ip": "127.0.0.1", "port": 0, "port_retries": 0, "open_browser": False,
                  "allow_root": True, "terminals_enabled": False},
    "LabApp": {"extension_manager": "readonly"},
}
# The user settings of JupyterLab's page: no "get Jupyter news?" toast over the screenshot.
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}


def missing_prerequisites() -> list[str]:
    """What the browser test needs and this machine lacks (empty when all is there)."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Debian's chromium ({CHROMIUM}; apt-get install chromium)")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {package} (pip install -e '.[test]')")
    return missing


def require_prerequisites() -> None:
    """Skip the test when something is missing, naming it; under CI fail instead."""
    missing = missing_prerequisites()
    if not missing:
        return
    reason = "the browser test needs " + " and ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (CI=true: CI must install it, see .ci/run)", pytrace=False)
    pytest.skip(reason)


@dataclass
class JupyterLab:
    """A running JupyterLab server serving ``root``."""

    process: subprocess.Popen
    root: pathlib.Path
    runtime_dir: pathlib.Path  # JUPYTER_RUNTIME_DIR: the server's info file and its kernels' connection files
    log_path: pathlib.Path
    token: str
    url: str = ""  # e.g. http://127.0.0.1:PORT/, known once the server has written its info file

    def notebook_url(self, name: str) -> str:
        """The URL that opens notebook ``name`` (relative to ``root``) in JupyterLab, logged in."""
        return f"{self.url}lab/tree/{name}?token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10.0) -> int:
        """Call the server's REST API (``path`` below ``/api/``); return the HTTP status."""
        request = urllib.request.Request(f"{self.url}api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server answers ``GET /api/status`` with our token."""
        wait_for(self._ready, timeout, f"JupyterLab to answer /api/status (its log: {self.log_path})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {self.process.returncode}; its log:\n{self.log_tail()}")
        if not self.url:
            info = self.runtime_dir / f"jpserver-{self.process.pid}.json"
            with contextlib.suppress(OSError, ValueError):
                self.url = json.loads(info.read_text())["url"]
        if not self.url:
            return False
        with contextlib.suppress(OSError):
            return self.api("GET", "status", timeout=5.0) == 200
        return False

    def stop(self) -> None:
        """Shut the server and its kernels down; kill whatever is left of them."""
        if self.url and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.api("POST", "shutdown")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5.0)
        kill_processes_mentioning(str(self.runtime_dir))


def kill_processes_mentioning(text: str) -> list[int]:
    """SIGKILL every process whose command line contains ``text`` (kernels name their
    connection file, which lives in our own runtime folder); return their pids."""
    killed = []
    needle = text.encode()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def jupyter_environment(home: pathlib.Path) -> dict[str, str]:
    """This process's environment with every Jupyter/IPython folder moved under ``home``."""
    env = dict(os.environ)
    for name in ("JUPYTER_TOKEN", "JUPYTER_PORT", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(name, None)
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
               "JUPYTERLAB_SETTINGS_DIR": "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
               "IPYTHONDIR": "ipython"}
    for name, folder in folders.items():
        path = home / folder
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    return env


def write_json(path: pathlib.Path, value: object) -> None:
    """Write ``value`` as JSON to ``path``, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def start_jupyterlab(root: pathlib.Path, home: pathlib.Path, log_path: pathlib.Path) -> JupyterLab:
    """Start ``python -m jupyterlab`` serving ``root``, its folders under ``home``; do not wait for it."""
    env = jupyter_environment(home)
    write_json(pathlib.Path(env["JUPYTER_CONFIG_DIR"], "jupyter_server_config.json"), SERVER_CONFIG)
    for name, settings in LAB_SETTINGS.items():
        write_json(pathlib.Path(env["JUPYTERLAB_SETTINGS_DIR"], name), settings)
    token = secrets.token_hex(16)
    env["JUPYTER_TOKEN"] = token  # through the environment: other users can read command lines
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}"],
                                   env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return JupyterLab(process=process, root=root, runtime_dir=pathlib.Path(env["JUPYTER_RUNTIME_DIR"]),
                      log_path=log_path, token=token)


@pytest.fixture
def jupyterlab(tmp_path: pathlib.Path) -> Iterator[JupyterLab]:
    """A JupyterLab serving an empty folder (``.root``); stopped with its kernels at the end."""
    require_prerequisites()
    root = tmp_path / "notebooks"
    root.mkdir()
    lab = start_jupyterlab(root, tmp_path / "jupyter", ARTIFACTS / "browser_e2e_jupyterlab.log")
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page of Debian's headless chromium, driven by Playwright (sync API)."""
    require_prerequisites()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(ACTION_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def copy_notebook(source: pathlib.Path, lab: JupyterLab) -> str:
    """Copy ``source`` into the served folder; return its name there."""
    shutil.copy(source, lab.root / source.name)
    return source.name


def keep_screenshot(page: Any, name: str, best_effort: bool = False) -> pathlib.Path | None:
    """Screenshot the page (or one element: a Playwright locator) into tests/artifacts/NAME.png;
    print and return its path.

    With ``best_effort`` (a test that is already failing), a failed screenshot
    is reported and ``None`` returned, so it does not hide the test's own error.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    try:
        page.screenshot(path=str(path))
    except Exception as error:
        if not best_effort:
            raise
        print(f"no screenshot ({error})")
        return None
    print(f"screenshot: {path}")
    return path
