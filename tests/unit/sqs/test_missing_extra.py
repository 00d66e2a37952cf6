"""Without the ``sqs`` extra the gateway imports and runs (start errors: tests/unit/providers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL = "install it from the repository root with: pip install './services/gateway[sqs]'"


@pytest.fixture
def without_aiobotocore(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import aiobotocore`` fails as if it were not installed."""
    blocked = tmp_path / "blocked" / "aiobotocore"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiobotocore'\", name='aiobotocore')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked.parent), env.get("PYTHONPATH", "")])
    return env


def test_the_gateway_imports_and_builds_without_it(
    without_aiobotocore: dict[str, str], tmp_path: Path
) -> None:
    script = """
import sys
import jobwire.gateway
from jobwire.gateway import Gateway, GatewaySettings, StartError
Gateway(GatewaySettings.model_validate({}))
assert "aiobotocore" not in sys.modules or sys.modules["aiobotocore"] is None
sqs = {"provider": {"type": "sqs", "queue_urls": {"default": "https://sqs.example/1/q"}}}
try:
    Gateway(GatewaySettings.model_validate(sqs))
except StartError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=without_aiobotocore,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert INSTALL in result.stdout
    assert "aiobotocore is missing" in result.stdout
