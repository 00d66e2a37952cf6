"""Regenerate the Python code of the jobwire.v1 contract.

Writes messages, gRPC stubs and mypy-protobuf typing stubs for every file in
``proto/jobwire/v1`` into ``packages/jobwire-protos/src``. The output is
checked in; ``tests/unit/test_contract.py`` fails when it drifts.

Usage: ``hatch run gen-protos`` (or ``python scripts/gen_protos.py [OUT_DIR]``).
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("jobwire/v1")
DEFAULT_OUT = ROOT / "packages/jobwire-protos/src"
# The generator's version sets the runtime floors of jobwire-protos.
GRPCIO_TOOLS = "1.85.1"
KEEP = {"__about__.py", "__init__.py", "py.typed"}


def generate(out: Path) -> None:
    """Generate into ``out``, replacing earlier generated files."""
    if version("grpcio-tools") != GRPCIO_TOOLS:
        sys.exit(f"grpcio-tools {GRPCIO_TOOLS} is required, found {version('grpcio-tools')}")
    target = out / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    for path in target.iterdir():
        if path.name not in KEEP and path.is_file():
            path.unlink()
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        # The well-known types (google/protobuf/*.proto) ship inside grpc_tools.
        f"-I{files('grpc_tools') / '_proto'}",
        f"--plugin=protoc-gen-mypy={shutil.which('protoc-gen-mypy', path=str(bin_dir))}",
        f"--plugin=protoc-gen-mypy_grpc={shutil.which('protoc-gen-mypy_grpc', path=str(bin_dir))}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    init = target / "__init__.py"
    init.write_text('"""Generated code of the jobwire.v1 contract (see proto/jobwire/v1)."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
