"""Regenerate agentnb/_proto from protos/agentnb.proto.

Usage: python protos/generate.py [--check]

With --check nothing is written; the exit status is 1 when the committed code
differs from what the .proto would generate (the test suite runs this).
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = ROOT / "protos" / "agentnb.proto"
OUT = ROOT / "agentnb" / "_proto"
FILES = ("agentnb_pb2.py", "agentnb_pb2.pyi", "agentnb_pb2_grpc.py")


def _generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc

    args = [
        "protoc",
        f"-I{PROTO.parent}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    grpc_file = out_dir / "agentnb_pb2_grpc.py"
    # protoc writes an absolute import; the generated modules live in a package.
    text = grpc_file.read_text()
    text = text.replace("import agentnb_pb2 as agentnb__pb2", "from . import agentnb_pb2 as agentnb__pb2")
    grpc_file.write_text(text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = pathlib.Path(tmp)
        _generate(tmp_dir)
        stale = [name for name in FILES
                 if not (OUT / name).exists() or (OUT / name).read_text() != (tmp_dir / name).read_text()]
        if check:
            if stale:
                print("stale generated code: " + ", ".join(stale) + " (run: python protos/generate.py)")
                return 1
            return 0
        for name in FILES:
            (OUT / name).write_text((tmp_dir / name).read_text())
    print(f"wrote {', '.join(FILES)} to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
