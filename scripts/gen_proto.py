#!/usr/bin/env python3
"""Regenerate src/run_identity/core/_proto from proto/ with the protoc of grpcio-tools.

``--check`` regenerates into a temporary folder and exits 1 when the checked-in code differs (drift).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "src" / "run_identity" / "core" / "_proto"
SOURCES = ["run_identity/v1/manifest.proto"]
GENERATED = ["manifest_pb2.py", "manifest_pb2.pyi"]


def generate(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                *SOURCES,
            ],
            check=True,
            cwd=PROTO,
        )
        for name in GENERATED:
            shutil.copyfile(Path(tmp) / "run_identity" / "v1" / name, dest / name)


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            drift = [n for n in GENERATED if not filecmp.cmp(Path(tmp) / n, OUT / n, shallow=False)]
        if drift:
            print(f"protobuf code is stale: {', '.join(drift)}; run: python3 scripts/dev.py proto", file=sys.stderr)
            return 1
        print("protobuf code is up to date")
        return 0
    if argv:
        print("usage: gen_proto.py [--check]", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "__init__.py").write_text('"""Generated protobuf code (scripts/gen_proto.py); do not edit."""\n')
    generate(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
