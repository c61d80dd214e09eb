"""Another local user plants a module in a shared folder you work in: it must not run in your servers.

The attacker is a real other Unix user (the tests run as root and create it). It
writes ``argparse.py`` (imported by every agent server at start) into a
world-writable folder; the victim runs a script kept elsewhere with that folder as
its current directory. The victim's own ``sys.path`` does not have the folder, so
neither may the servers it starts (a child server, a daemon).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from attacker import ATTACKER, as_attacker

VICTIM = textwrap.dedent("""
    import sys
    import agentnb
    from agentnb import AgentBase

    class Echo(AgentBase):
        def echo(self, x):
            return x

    if sys.argv[1] == "daemon":
        agentnb.start_server("victim-daemon")
    try:
        print(Echo("e", to_dist=True).echo("answered"))
    finally:
        if sys.argv[1] == "daemon":
            agentnb.stop_server("victim-daemon", grace=1)
""")


@pytest.mark.parametrize("mode", ["child", "daemon"])
def test_a_module_planted_in_the_current_folder_does_not_run_in_your_servers(
        mode: str, tmp_path: pathlib.Path, runtime_dir: str, request: pytest.FixtureRequest) -> None:
    shared = pathlib.Path(tempfile.mkdtemp(prefix="agentnb-shared-"))  # outside pytest's 0700 folder
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    os.chmod(shared, 0o1777)  # like /tmp: everyone may add files
    marker = shared / "ran-in-the-victims-server"
    as_attacker(f"cat > {shared / 'argparse.py'}",
                stdin=f"open({str(marker)!r}, 'w').write('code of {ATTACKER} ran')\nraise SystemExit(3)\n")
    assert (shared / "argparse.py").stat().st_uid != os.getuid()
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)

    done = subprocess.run([sys.executable, str(script), mode], cwd=shared, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AGENTNB_RUNTIME_DIR": runtime_dir})

    assert not marker.exists(), "the planted module ran in the victim's server"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answered"
