"""Without the ``postgres`` extra the gateway runs; ``type = "postgres"`` says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL = "pip install './services/gateway[postgres]'"


@pytest.fixture
def without_asyncpg(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import asyncpg`` fails as if it were not installed."""
    blocked = tmp_path / "blocked" / "asyncpg"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked.parent), env.get("PYTHONPATH", "")])
    return env


def test_the_command_fails_at_start_with_the_install_command(
    without_asyncpg: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text(
        '[provider]\ntype = "postgres"\ndatabase_url = "postgresql+asyncpg://u@127.0.0.1/db"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        env=without_asyncpg,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert INSTALL in line
    assert "asyncpg is missing" in line
