"""Another Unix user on this machine, to run attacks as (the tests run as root and create it)."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

ATTACKER = "agentnb-attacker"


def attacker_uid() -> int:
    """The attacker's uid, creating the user when it does not exist yet (root only)."""
    try:
        return pwd.getpwnam(ATTACKER).pw_uid
    except KeyError:
        pass
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("attack tests run as root in CI (they create another user)")
        pytest.skip("attack tests need root, to create another user")
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ATTACKER],
                   check=True, capture_output=True)
    return pwd.getpwnam(ATTACKER).pw_uid


def as_attacker(command: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the shell ``command`` as the attacker; raise if it fails."""
    attacker_uid()
    return subprocess.run(["runuser", "-u", ATTACKER, "--", "sh", "-c", command], input=stdin, text=True,
                          capture_output=True, timeout=timeout, check=True)
