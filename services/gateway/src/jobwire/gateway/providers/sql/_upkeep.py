"""The SQL provider's background loop: heartbeat, dead gateways, lease checks, pruning.

One task per gateway, every ``heartbeat_interval``: the heartbeat row, the
release of dead gateways' leases and of this gateway's stranded ones, and
(PostgreSQL) the watched jobs' changes made elsewhere (:mod:`._fleet`) each
time; a check of this gateway's leases every ``poll_interval``, pruning
(:mod:`._retention`) every ``prune_interval``. A database that is away is
logged and tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._provider_config import PostgresProviderSettings, SqliteProviderSettings
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._fleet import Fleet
from jobwire.gateway.providers.sql._retention import prune

logger = logging.getLogger("jobwire.gateway.sql")


async def maintain(
    sql: Sql,
    fleet: Fleet,
    settings: PostgresProviderSettings | SqliteProviderSettings,
    busy: Callable[[str], bool],
) -> None:
    """Run the loop until cancelled."""
    interval = settings.heartbeat_interval.total_seconds()
    poll = settings.poll_interval.total_seconds()
    next_check = next_prune = time.monotonic()
    while True:
        try:
            await fleet.beat()
            await fleet.reap()
            await fleet.release_stranded(busy)
            if sql.postgres:
                await fleet.refresh_watched()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + poll
                await fleet.check_leases()
            if now >= next_prune:
                next_prune = now + settings.prune_interval.total_seconds()
                await prune(
                    sql,
                    now=time.time(),
                    max_age=settings.history_retention.total_seconds(),
                    max_count=settings.max_history,
                )
        except UnavailableError as error:
            logger.warning("queue maintenance: %s", error)
        except Exception:
            logger.exception("queue maintenance failed; retrying")
        await asyncio.sleep(interval)
