"""Every distribution builds a wheel; the wheels alone install and run in a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "jobwire-protos": ROOT / "packages/jobwire-protos",
    "jobwire-client": ROOT / "packages/jobwire-client",
    "jobwire-worker": ROOT / "packages/jobwire-worker",
    "jobwire-dashboard": ROOT / "packages/jobwire-dashboard",
    "jobwire-gateway": ROOT / "services/gateway",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not on PATH: the release test builds with hatch and installs with uv"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*command: str | Path, cwd: Path | None = None) -> str:
    # The venv must see nothing of the workspace: no PYTHONPATH, no active env,
    # and no HATCH_* of the `hatch run` that runs the tests (hatch would look for
    # that env in each distribution's own project).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("HATCH_")
    }
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    hatch = tool("hatch")
    dist = tmp_path_factory.mktemp("dist")
    for directory in DISTRIBUTIONS.values():
        run(hatch, "build", "-t", "wheel", dist, cwd=directory)
    built = sorted(dist.glob("*.whl"))
    assert {wheel.name.split("-")[0].replace("_", "-") for wheel in built} == set(DISTRIBUTIONS)
    return built


def fresh_venv(path: Path) -> Path:
    run(tool("uv"), "venv", "--quiet", "--python", sys.executable, path)
    return path / "bin/python"


@pytest.mark.parametrize(
    ("distribution", "module"),
    [
        ("jobwire-protos", "jobwire.v1.queue_service_pb2_grpc"),
        ("jobwire-client", "jobwire.client"),
        ("jobwire-worker", "jobwire.worker"),
        ("jobwire-dashboard", "jobwire.dashboard"),
        ("jobwire-gateway", "jobwire.gateway"),
    ],
)
def test_each_distribution_installs_alone(
    wheels: list[Path], tmp_path: Path, distribution: str, module: str
) -> None:
    python = fresh_venv(tmp_path / "venv")
    # Siblings resolve from the built wheels (jobwire-* are on no index).
    uv = tool("uv")
    run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--find-links",
        wheels[0].parent,
        distribution,
    )
    run(uv, "pip", "check", "--python", python)
    run(python, "-c", f"import {module}", cwd=tmp_path)


def test_wheels_run_gateway_worker_and_client(wheels: list[Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    # By file, so the siblings come from these wheels and never from an index.
    run(tool("uv"), "pip", "install", "--quiet", "--python", python, *wheels)
    out = run(python, ROOT / "tests/release/smoke.py", cwd=tmp_path)
    assert "result 5" in out
    origins = [line.removeprefix("from ") for line in out.splitlines() if line.startswith("from ")]
    assert origins
    assert all(origin.startswith(str(venv)) for origin in origins), origins
