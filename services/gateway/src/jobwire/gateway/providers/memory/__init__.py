"""In-process provider (``type = "memory"``): the embedded default; jobs live in this process."""

from __future__ import annotations

from jobwire.gateway.providers.memory._provider import MemoryProvider

__all__ = ["MemoryProvider"]
