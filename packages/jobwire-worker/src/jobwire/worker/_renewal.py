"""Keeping leases: renewing them before they run out, answering for expired ones."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from jobwire.v1 import job_pb2
from jobwire.worker._execution import Execution
from jobwire.worker._framing import NackItem, Outbox


async def renew_leases(
    executions: Mapping[str, Execution],
    outbox: Outbox,
    *,
    lease: float,
    interval: float,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Every heartbeat, ask to extend the leases that would run out before the next."""
    # Renew a lease once less than half of it is left (or less than what
    # one missed heartbeat would eat), so it never runs out between beats.
    margin = max(lease / 2, interval * 1.5)
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        horizon, renewed = now + margin, now + lease
        for ex in executions.values():
            if ex.expires_at <= horizon:
                ex.expires_at = renewed
                outbox.extend.add(ex.lease_id)
        if outbox.extend:
            outbox.wake()


def answer_expired(outbox: Outbox, ex: Execution) -> None:
    """Answer for a lease the gateway expired, so that it frees the lease's credit.

    The gateway keeps an expired lease's credit until the worker answers for
    it (a stuck worker must not get more work); it may refuse the answer.
    """
    outbox.refusable.add(ex.lease_id)
    failure = job_pb2.JobFailure(
        message="lease expired before the handler finished",
        type="LEASE_EXPIRED",
        attempt=ex.ctx.attempt,
    )
    outbox.nacks.append(NackItem(lease_id=ex.lease_id, failure=failure, retryable=True))
    outbox.wake()
