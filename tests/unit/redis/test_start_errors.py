"""Start-up failures of `type = "redis"`: a missing extra, an unreachable Redis; one line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_support import free_port

INSTALL = "install it from the repository root with: pip install './services/gateway[redis]'"


@pytest.fixture
def without_redis(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import redis`` fails as if it were not installed."""
    blocked = tmp_path / "blocked" / "redis"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redis'\", name='redis')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked.parent), env.get("PYTHONPATH", "")])
    return env


def test_the_command_fails_at_start_with_the_install_command(
    without_redis: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text('[provider]\ntype = "redis"\nurl = "redis://:hunter2@127.0.0.1:1/0"\n')
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        env=without_redis,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert INSTALL in result.stderr
    assert "redis is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_an_unreachable_redis_fails_the_start_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "jobwire.toml"
    port = free_port()  # nothing listens there
    config.write_text(
        f'[provider]\ntype = "redis"\nurl = "redis://:hunter2@127.0.0.1:{port}/0"\n'
        'connect_timeout = "2s"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot start: Redis failed" in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
