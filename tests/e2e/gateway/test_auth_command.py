"""``python -m jobwire.gateway.auth`` as a process."""

from __future__ import annotations

from pathlib import Path

import commands


def test_the_command_prints_the_hash_and_no_warning(tmp_path: Path) -> None:
    result = commands.run(
        "jobwire.gateway.auth", "--generate", cwd=tmp_path, PYTHONWARNINGS="error"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token, digest = (line.split()[-1] for line in result.stdout.splitlines())
    assert len(token) >= 40
    assert len(digest) == 64
