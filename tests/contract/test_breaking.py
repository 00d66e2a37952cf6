"""``scripts/buf_breaking.py``: the contract check that ``hatch run test:buf`` runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node_tools import ROOT, npm_ci

SCRIPT = ROOT / "scripts/buf_breaking.py"


@pytest.fixture(scope="module", autouse=True)
def buf_installed() -> None:
    npm_ci(ROOT)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_current_contract_is_compatible_with_the_previous_commit() -> None:
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buf breaking: " in result.stdout


def test_deleting_a_field_fails(tmp_path: Path) -> None:
    proto = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto)
    job = proto / "jobwire/v1/job.proto"
    job.write_text(job.read_text().replace("string worker_id = 19;", ""))
    result = run("--ref", "HEAD", "--proto", str(proto))
    assert result.returncode != 0
    assert 'field "19" with name "worker_id" on message "Job" was deleted' in result.stdout


def test_no_baseline_skips_with_a_message() -> None:
    result = run("--ref", "no-such-ref")
    assert result.returncode == 0
    assert result.stdout == "buf breaking: skipped, no proto/ at no-such-ref to compare with\n"
