"""Node.js and npm for the cross-language e2e tests.

Tests skip when ``node``/``npm`` are missing on a developer machine, but fail
under CI (``CI`` set), where a missing toolchain would silently drop coverage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_EXAMPLES = ROOT / "examples/node"


def require(*tools: str) -> None:
    """Skip (or fail under CI) unless every tool is on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not on PATH: these e2e tests need Node.js 18+ and npm"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def npm_ci(directory: Path) -> None:
    """Install the locked dependencies of ``directory`` unless already installed."""
    require("node", "npm")
    lock = directory / "package-lock.json"
    installed = directory / "node_modules/.package-lock.json"
    # npm ci wipes node_modules each time; skipping it when the lock is unchanged
    # keeps repeated local runs fast.
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
        cwd=directory,
        check=True,
        timeout=180,
    )
