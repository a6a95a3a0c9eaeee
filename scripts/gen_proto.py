"""Generate Python modules (and mypy stubs) from proto/ into homeroom/events/.

    python scripts/gen_proto.py          regenerate
    python scripts/gen_proto.py --check  fail if the committed modules are stale

The generated code is committed so that services never need protoc at run time.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = ROOT / "homeroom" / "events" / "v1"


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    protos = sorted(proto_root.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--mypy_out={out_dir}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "homeroom" / "events" / "v1").glob("*_pb2.py*"))


def stale_modules(proto_root: Path = PROTO_ROOT, out_package: Path = OUT_PACKAGE) -> list[str]:
    """Generated module names that differ from, are missing from, or are extra in `out_package`."""
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp), proto_root)
        names = {p.name for p in generated}
        committed = {p.name for p in out_package.glob("*_pb2.py*")}
        stale = [n for n in sorted(names) if n not in committed]
        stale += [
            p.name for p in generated if p.name in committed and not filecmp.cmp(p, out_package / p.name, shallow=False)
        ]
        stale += [n for n in sorted(committed - names)]
        return stale


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if committed modules are stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        names = {p.name for p in generated}
        if check:
            stale = stale_modules()
            if stale:
                print(f"generated protobuf modules are stale: {', '.join(stale)}; run scripts/gen_proto.py")
                return 1
            print(f"protobuf modules up to date ({len(names)} files)")
            return 0
        for old in OUT_PACKAGE.glob("*_pb2.py*"):
            old.unlink()
        for p in generated:
            shutil.copy(p, OUT_PACKAGE / p.name)
        print(f"wrote {len(generated)} files to {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
