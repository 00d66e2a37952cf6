"""The README's main job (``hatch run demo``) runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "examples/quickstart.py"


def test_quickstart_processes_every_job_and_prints_stats(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(QUICKSTART), "--jobs", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "enqueued 223 jobs" in out
    assert "queue statistics" in out
    assert "│ default │       0 │          0 │       222 │      0 │    1 │       1 │" in out
    assert "a thumbnail result: {'width': 256}" in out
    assert "a dead job: report:build, no such team" in out
    assert "processed" in result.stderr  # the progress bar
    assert list(tmp_path.iterdir()) == []  # nothing left behind
