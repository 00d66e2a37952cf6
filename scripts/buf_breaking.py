"""Fail when ``proto/`` breaks the ``jobwire.v1`` contract of the previous commit.

Run by ``hatch run test:buf`` (and so by ``test:ci``). The baseline is
``proto/`` as of ``HEAD~1`` (the main branch's previous version in CI; locally
this also covers uncommitted edits). It is checked out with ``git archive``
and compared with ``buf breaking`` using the FILE rules of ``buf.yaml``. With
no previous commit, or none holding ``proto/`` (a shallow clone, the first
commit), there is nothing to break and the check is skipped with a message.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules/.bin/buf"


def export_baseline(ref: str, destination: Path) -> bool:
    """Write ``proto/`` as of ``ref`` under ``destination``; False when there is none."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "proto"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return False
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return (destination / "proto").is_dir()


def main(argv: list[str] | None = None) -> int:
    """Compare the proto tree with the baseline; return buf's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD~1", help="git revision of the baseline")
    parser.add_argument("--proto", type=Path, default=ROOT / "proto", help="tree to check")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as baseline:
        if not export_baseline(args.ref, Path(baseline)):
            print(f"buf breaking: skipped, no proto/ at {args.ref} to compare with")
            return 0
        result = subprocess.run(
            [str(BUF), "breaking", str(args.proto), "--against", f"{baseline}/proto"],
            cwd=ROOT,
            check=False,
        )
    if result.returncode == 0:
        print(f"buf breaking: jobwire.v1 is compatible with {args.ref}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
