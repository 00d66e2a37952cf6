"""Listing jobs across the provider and the scheduler, one page at a time.

A job the gateway accepted lives in the provider, or in the scheduler while
it waits for a ``schedule_time`` beyond the delay threshold. ``ListJobs``
merges both, newest first by creation time. The page token carries a cursor
for each source (the provider's own, opaque; the scheduler's: the creation
time and id of the last job it gave) and the filter it was made for, so a
token used with other filters is refused. A job handed from the scheduler to
the provider between two pages may be listed twice or not at all in that
listing, as with any listing of changing data.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._models import JobFilter, JobRecord

ProviderPage = Callable[[int, str | None], Awaitable[tuple[list[JobRecord], str | None]]]
HeldPage = Callable[[int, tuple[float, str] | None], Awaitable[list[JobRecord]]]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stopped in each source."""

    provider: str | None = None
    """The provider's cursor; None at the start."""
    held: tuple[float, str] | None = None
    """Creation time and id of the last held job given; None at the start."""
    provider_done: bool = False
    held_done: bool = False


async def merged_page(
    limit: int, cursor: Cursor, provider: ProviderPage, held: HeldPage | None
) -> tuple[list[JobRecord], Cursor | None]:
    """One page of up to ``limit`` jobs from both sources, newest first, and the next cursor."""
    theirs: list[JobRecord] = []
    after_theirs: str | None = None
    if not cursor.provider_done:
        theirs, after_theirs = await provider(limit, cursor.provider)
    ours: list[JobRecord] = []
    held_done = held is None or cursor.held_done
    if held is not None and not held_done:
        ours = await held(limit + 1, cursor.held)
    # A merge, not a sort: each source's own order is kept (the memory
    # provider's jobs of one batch share their creation time).
    merged = heapq.merge(theirs, ours, key=lambda job: job.create_time, reverse=True)
    page = list(itertools.islice(merged, limit))
    taken = {job.id for job in page}
    used_theirs = sum(1 for job in theirs if job.id in taken)
    used_ours = [job for job in ours if job.id in taken]

    next_provider, provider_done = cursor.provider, cursor.provider_done
    if not provider_done:
        if used_theirs == len(theirs):
            next_provider, provider_done = after_theirs, after_theirs is None
        elif used_theirs:
            # Cut short by the merge: the provider's cursors are its own, so
            # ask it where its page ends after the jobs used.
            _, next_provider = await provider(used_theirs, cursor.provider)
    next_held = cursor.held
    if not held_done:
        if len(used_ours) == len(ours):
            held_done = True
        elif used_ours:
            next_held = (used_ours[-1].create_time, used_ours[-1].id)
    if provider_done and held_done:
        return page, None
    return page, Cursor(next_provider, next_held, provider_done, held_done)


def fingerprint(where: JobFilter) -> str:
    """What a page token was made for."""
    key = f"{where.queue}\0{where.type}\0{sorted(where.states)}\0{where.id_prefix}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_token(cursor: Cursor, where: JobFilter) -> str:
    """The page token of ``cursor``."""
    data = {
        "p": None if cursor.provider_done else cursor.provider or "",
        "s": None if cursor.held_done else (list(cursor.held) if cursor.held else []),
        "f": fingerprint(where),
    }
    raw = json.dumps(data, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, where: JobFilter) -> Cursor:
    """The cursor of a page token made for the same filter."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        provider, held, used_for = data["p"], data["s"], data["f"]
        after = (float(held[0]), str(held[1])) if held else None
    except (ValueError, TypeError, KeyError, IndexError):
        raise InvalidPageTokenError(
            "page_token", "malformed; pass next_page_token as returned"
        ) from None
    if used_for != fingerprint(where) or not (provider is None or isinstance(provider, str)):
        raise InvalidPageTokenError(
            "page_token", "belongs to a listing with other filters; start again without a token"
        )
    return Cursor(provider or None, after, provider_done=provider is None, held_done=held is None)
