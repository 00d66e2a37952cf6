"""Every hand-written module of the gateway and the SDKs stays at most MAX_LINES long.

One concept per module (README, "Development"): a module that outgrows the
limit holds several, and is split where one ends, not cut in halves.
Generated code (``*_pb2*``) is exempt.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = [ROOT / "services/gateway/src", *sorted((ROOT / "packages").glob("*/src"))]
MAX_LINES = 400


def _modules() -> list[Path]:
    return [
        path
        for tree in TREES
        for path in sorted(tree.rglob("*.py"))
        if "_pb2" not in path.name and "__pycache__" not in path.parts
    ]


def test_the_trees_hold_the_modules_checked() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in _modules()}
    assert "services/gateway/src/jobwire/gateway/_service.py" in names
    assert "packages/jobwire-client/src/jobwire/client/_models.py" in names
    assert "packages/jobwire-worker/src/jobwire/worker/_worker.py" in names


def test_no_module_is_longer_than_the_limit() -> None:
    over = {
        path.relative_to(ROOT).as_posix(): count
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not over, (
        f"modules over {MAX_LINES} lines (split each where one concept ends and the next "
        f"begins): {over}"
    )
