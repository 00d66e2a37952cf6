"""SQL queue providers (``type = "postgres"``, ``type = "sqlite"``): jobs in one table."""

from __future__ import annotations

from jobwire.gateway.providers.sql._dialect import FileInUseError
from jobwire.gateway.providers.sql._provider import SqlProvider

__all__ = ["FileInUseError", "SqlProvider"]
