"""SQLite commits: synced to disk for what must not be lost, not for what may be."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from jobwire.gateway._db import create_engine

FULL, NORMAL = 2, 1
"""``PRAGMA synchronous`` values."""


@pytest.mark.parametrize(("synchronous", "expected"), [(True, FULL), (False, NORMAL)])
async def test_a_commit_is_synced_unless_it_may_be_lost(
    tmp_path: Path, synchronous: bool, expected: int
) -> None:
    # NORMAL in WAL mode: a commit is in the log when it returns, synced at the
    # next checkpoint; a crash of the process loses nothing, one of the machine
    # may lose the last commits (claims and acks: a redelivery).
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}", synchronous=synchronous)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(text("PRAGMA synchronous")) == expected
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
    finally:
        await engine.dispose()
