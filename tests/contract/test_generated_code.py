"""The checked-in generated code is exactly what scripts/gen_protos.py produces."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "packages/jobwire-protos/src/jobwire/v1"
HAND_WRITTEN = {"__about__.py", "py.typed", "__pycache__"}


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = tmp_path / "jobwire/v1"
    generated = {p.name for p in fresh.iterdir()}
    checked_in = {p.name for p in CHECKED_IN.iterdir()} - HAND_WRITTEN
    assert generated == checked_in, "run `hatch run test:gen-protos` and commit the result"
    _, mismatch, errors = filecmp.cmpfiles(fresh, CHECKED_IN, sorted(generated), shallow=False)
    assert not errors, errors
    assert not mismatch, (
        f"generated code is stale ({mismatch}); run `hatch run test:gen-protos` and commit"
    )


def test_every_proto_imports_only_well_known_types() -> None:
    for proto in (ROOT / "proto/jobwire/v1").glob("*.proto"):
        for line in proto.read_text().splitlines():
            if line.startswith("import "):
                target = line.split('"')[1]
                assert target.startswith(("google/protobuf/", "jobwire/v1/")), (proto.name, target)
