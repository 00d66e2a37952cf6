"""Other gateways' changes, looked up in the records: every gateway looks.

Every ``sync_interval`` the provider reads which queues are paused, asks its
records which of the jobs leased here another gateway cancelled or purged
(their leases are revoked and their messages deleted), and reads back the
jobs someone watches here that are processed elsewhere, so that ``WatchJob``
streams see their changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from jobwire.gateway._errors import GatewayError
from jobwire.gateway._events import JobEvents
from jobwire.gateway.providers._records._operations import Operations
from jobwire.gateway.providers._records._store import JobRecords
from jobwire.gateway.providers._records._tables import effective
from jobwire.gateway.providers._types import RevokeReason
from jobwire.gateway.providers.base import ProviderHost

logger = logging.getLogger("jobwire.gateway.records")


class RemoteChanges:
    """The look-up loop; ``cancelled(job_id)`` settles a message leased here."""

    def __init__(
        self,
        records: JobRecords,
        host: Callable[[], ProviderHost],
        events: JobEvents,
        cancelled: Callable[[str], None],
        interval: float,
        *,
        operations: Operations,
        paused: Callable[[Collection[str]], None],
    ) -> None:
        self._operations = operations
        self._paused = paused
        self._records = records
        self._host = host
        self._events = events
        self._cancelled = cancelled
        self._interval = interval
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start looking, as a task of the running loop."""
        self._task = asyncio.create_task(self._loop(), name="jobwire-records-sync")

    async def stop(self) -> None:
        """Stop between two look-ups, never in the middle of one."""
        self._closing.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                await self.look()
            except GatewayError as error:
                logger.warning("looking up other gateways' changes failed: %s", error)

    async def look(self) -> None:
        """Revoke leases of jobs cancelled elsewhere; tell watchers of changes made elsewhere."""
        host = self._host()
        self._paused(await self._operations.paused())
        leased = list(host.leased_job_ids())
        for job_id in await self._operations.gone_among(leased) if leased else ():
            if job_id in host.leased_job_ids():
                host.lost(job_id, RevokeReason.CANCELLED, "job purged")
                self._cancelled(job_id)
        leased = list(host.leased_job_ids())
        cancelled = await self._records.cancelled_among(leased) if leased else []
        if cancelled:
            for record in await self._records.load(cancelled):
                if record.id not in host.leased_job_ids():
                    continue
                error = record.last_error
                text = f"job cancelled: {error.message if error else 'cancelled'}"
                host.lost(record.id, RevokeReason.CANCELLED, text)
                self._cancelled(record.id)
                self._events.publish(record)
        here = host.leased_job_ids()
        elsewhere = [job_id for job_id in self._events.watched() if job_id not in here]
        if elsewhere:
            now = time.time()
            for record in await self._records.load(elsewhere):
                self._events.publish_if_newer(effective(record, now))
