"""Helpers to run a real gateway in tests, on 127.0.0.1 and a free port."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jobwire.gateway._config import GatewaySettings
from jobwire.gateway._server import Gateway


def settings_for_tests(**sections: Any) -> GatewaySettings:
    """Settings for a throwaway gateway: port 0 on loopback, the given overrides.

    Each keyword is a config table (``server``, ``provider``, ...) given as a
    dict of keys to override, for example ``server={"lease_duration": 1}``.
    Unless ``scheduler`` names a ``database_url``, the gateway gets a SQLite
    file of its own in a temporary directory removed when the process exits.
    """
    server = {"listen": "127.0.0.1:0", "shutdown_grace": 1, **sections.pop("server", {})}
    scheduler = {"database_url": scratch_sqlite_url(), **sections.pop("scheduler", {})}
    # model_validate skips the environment, so a developer's JOBWIRE_* variables
    # cannot change what a test runs against.
    return GatewaySettings.model_validate({"server": server, "scheduler": scheduler, **sections})


def scratch_sqlite_url() -> str:
    """Return the URL of a new SQLite file in this process's scratch directory."""
    return f"sqlite+aiosqlite:///{_scratch_directory()}/scheduler-{uuid.uuid4().hex}.db"


@functools.cache
def _scratch_directory() -> str:
    path = tempfile.mkdtemp(prefix="jobwire-test-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@asynccontextmanager
async def running_gateway(
    settings: GatewaySettings | None = None, **sections: Any
) -> AsyncIterator[Gateway]:
    """Start a gateway for the ``async with`` block and stop it afterwards."""
    gateway = Gateway(settings or settings_for_tests(**sections))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop(grace=0.5)


__all__ = ["running_gateway", "scratch_sqlite_url", "settings_for_tests"]
