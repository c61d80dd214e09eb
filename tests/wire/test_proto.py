"""The generated gRPC code is what protos/agentnb.proto generates (one command regenerates it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from helpers_runtime import REPO


def _check(root: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"{root}/protos/generate.py", "--check"], capture_output=True,
                          text=True, timeout=120, cwd=root)


def test_generated_code_is_up_to_date() -> None:
    done = _check(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_fails_when_the_proto_changes(tmp_path) -> None:
    # A copy of the tree, with one field added to the contract and nothing regenerated.
    root = tmp_path / "copy"
    shutil.copytree(f"{REPO}/protos", root / "protos")
    shutil.copytree(f"{REPO}/agentnb/_proto", root / "agentnb" / "_proto")
    proto = root / "protos" / "agentnb.proto"
    text = proto.read_text().replace("message InfoRequest {}", "message InfoRequest {\n  bool verbose = 1;\n}")
    proto.write_text(text)
    done = _check(str(root))
    assert done.returncode == 1
    assert "stale" in done.stdout
    # Regenerating makes it pass again.
    subprocess.run([sys.executable, f"{root}/protos/generate.py"], check=True, capture_output=True, timeout=120)
    assert _check(str(root)).returncode == 0
