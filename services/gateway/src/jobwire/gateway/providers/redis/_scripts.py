"""The Lua scripts, loaded once per client with redis-py's ``register_script``.

Each state change the provider makes is one script (``lua/*.lua``), so it
is atomic in Redis and nothing depends on the gateway staying connected
between two commands. ``lua/lib.lua`` (the key layout and shared helpers) and
``lua/lease.lua`` (leasing, flow control's claims) are prepended to each.
redis-py runs a script by its SHA1 and loads it again
when Redis answers ``NOSCRIPT`` (after a restart, say).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


def _source(name: str) -> str:
    folder = resources.files(__package__) / "lua"
    return "\n".join((folder / f"{part}.lua").read_text() for part in ("lib", "lease", name))


@dataclass(frozen=True, slots=True)
class Scripts:
    """One callable per script; see each ``lua/NAME.lua`` for its arguments."""

    insert: AsyncScript
    claim: AsyncScript
    settle: AsyncScript
    extend: AsyncScript
    progress: AsyncScript
    cancel: AsyncScript
    promote: AsyncScript
    reap: AsyncScript
    trim: AsyncScript
    counts: AsyncScript
    replay: AsyncScript
    purge: AsyncScript
    share: AsyncScript
    unclaim: AsyncScript
    limits: AsyncScript

    @classmethod
    def register(cls, client: Redis) -> Scripts:
        """Register every script with ``client``."""
        loaded: dict[str, Any] = {
            field.name: client.register_script(_source(field.name)) for field in fields(cls)
        }
        return cls(**loaded)
