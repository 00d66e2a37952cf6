"""Flow control in the provider kit: the rules every provider applies the same way.

A queue's :class:`~jobwire.gateway._limits.QueueLimits` bound how many of
its jobs are *processing* at once (per concurrency key, and for the whole
queue) and how fast they are delivered (a token bucket). The rules live here
and in the service (key policies, validation, ``waiting_reason``); what a
provider must do is keep the state they read where every gateway of its
backend sees it, and admit jobs in ``claim`` by it, without scanning the
backlog.

What a provider implements to set :attr:`QueueProvider.supports_flow_control`:

* store each job's ``concurrency_key`` (``JobRecord.concurrency_key``);
* ``set_limits`` / ``limits``: keep each queue's limits (durable providers:
  in their database, seen by every gateway within a second);
* in ``claim``: per queue, admit at most :func:`budget` jobs (the queue's
  ``max_concurrency`` less the jobs processing, and the whole tokens of the
  rate's bucket), none of a key with ``max_concurrency_per_key`` jobs
  processing, rotating across keys with ready jobs (``weight`` deliveries
  per key per round; jobs without a key form one more lane; a queue with no
  keys stays strictly FIFO), priority and age ordering within a key. It
  needs a structure per key: a ready list per key and a rotation of the
  keys that may run (memory), or an index on (queue, key, priority, time)
  and a table of processing counts per key (SQL), or a sorted set per key,
  the keys in one sorted set and a set of processing jobs per key (Redis).
  A claim that admits nothing because of the rate waits for
  :meth:`TokenBucket.wait` (or the backend's equivalent), not for a poll;
* release a key's slot whenever its job leaves ``PROCESSING``: in
  ``settle`` (ack, nack, lease expiry, stream drop), ``cancel`` and
  ``purge``, and wake the claims its ready jobs were held from;
* ``key_jobs``: a key's pending and processing jobs, oldest first (the key
  policies of :mod:`jobwire.gateway._flow_requests` cancel from it);
* ``hold``: why a pending job waits (:func:`hold_of` decides it from the
  counts) and, in ``counts``, :class:`HeldCounts` (:func:`held_counts`).

The token bucket is per gateway on memory; a durable provider keeps one
bucket per queue in its backend (a row updated in the claim's transaction,
or a Redis hash a script refills), so the rate holds across gateways.
Providers without flow control leave ``supports_flow_control`` False: the
service then refuses concurrency keys and limits with FAILED_PRECONDITION.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from jobwire.gateway._limits import QueueLimits, RateLimit


class TokenBucket:
    """Deliveries admitted at ``rate``: full (``burst`` tokens) at first, refilled continuously.

    Any span of t seconds admits at most ``burst + rate.per_second * t``.
    """

    __slots__ = ("_last", "_tokens", "rate")

    def __init__(self, rate: RateLimit, now: float | None = None) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._last = time.monotonic() if now is None else now

    def available(self, now: float | None = None) -> int:
        """Whole tokens in the bucket now."""
        self._refill(time.monotonic() if now is None else now)
        # A hair of slack: 0.9999999 tokens after an exact wait is one token.
        return int(self._tokens + 1e-9)

    def take(self, count: int) -> None:
        """Spend ``count`` tokens (at most :meth:`available`)."""
        self._tokens -= count

    def wait(self, now: float | None = None) -> float:
        """Seconds until a whole token is in the bucket (0 when one is)."""
        self._refill(time.monotonic() if now is None else now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate.per_second

    def retune(self, rate: RateLimit) -> None:
        """Take a new rate; the tokens saved so far stay, up to the new burst."""
        self._refill(time.monotonic())
        self.rate = rate
        self._tokens = min(self._tokens, float(rate.burst))

    def _refill(self, now: float) -> None:
        if now > self._last:
            gained = (now - self._last) * self.rate.per_second
            self._tokens = min(float(self.rate.burst), self._tokens + gained)
            self._last = now


def tokens_at(rate: RateLimit, tokens: float, refilled: float, now: float) -> float:
    """The tokens in a bucket at ``now``: ``tokens`` counted at ``refilled``, and the refill."""
    gained = max(0.0, now - refilled) * rate.per_second
    return min(float(rate.burst), tokens + gained)


def whole(tokens: float) -> int:
    """Whole tokens (0.9999999 after an exact wait is one)."""
    return int(tokens + 1e-9)


def token_wait(rate: RateLimit, tokens: float) -> float:
    """Seconds until the bucket holds a whole token."""
    missing = 1.0 - tokens
    return 0.0 if missing <= 1e-9 else missing / rate.per_second


def budget(limits: QueueLimits, processing: int, tokens: int | None) -> int | float:
    """How many more jobs of a queue may start now (``math.inf``: no limit).

    ``processing`` is the queue's jobs processing now; ``tokens`` the whole
    tokens of its rate's bucket (None without a rate).
    """
    room: int | float = math.inf
    if limits.max_concurrency:
        room = max(0, limits.max_concurrency - processing)
    if tokens is not None:
        room = min(room, tokens)
    return room


Limit = Literal["key", "concurrency", "rate"]


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a pending job is not delivered: the limit that holds it."""

    limit: Limit
    queue: str
    key: str = ""
    processing: int = 0
    allowed: int = 0
    rate: str = ""

    @property
    def text(self) -> str:
        """The job's ``waiting_reason``."""
        if self.limit == "key":
            return f"concurrency key {self.key} ({self.processing} of {self.allowed} processing)"
        if self.limit == "concurrency":
            return f"max_concurrency {self.queue} ({self.processing} of {self.allowed} processing)"
        return f"rate_limit {self.queue} ({self.rate})"


def hold_of(
    limits: QueueLimits,
    queue: str,
    key: str,
    key_processing: int,
    queue_processing: int,
    tokens: int | None,
) -> Hold | None:
    """The limit holding a pending job back, most specific first; None when none does."""
    per_key = limits.max_concurrency_per_key
    if key and per_key and key_processing >= per_key:
        return Hold("key", queue, key, key_processing, per_key)
    if limits.max_concurrency and queue_processing >= limits.max_concurrency:
        return Hold("concurrency", queue, "", queue_processing, limits.max_concurrency)
    if limits.rate is not None and tokens is not None and tokens < 1:
        return Hold("rate", queue, rate=limits.rate.text)
    return None


@dataclass(slots=True)
class HeldCounts:
    """Pending jobs of one queue held back, per limit (``jobwire.v1.HeldCounts``)."""

    by_key: int = 0
    by_concurrency: int = 0
    by_rate: int = 0
    busy_keys: int = 0


def held_counts(
    limits: QueueLimits,
    pending: int,
    busy_keys: dict[str, int],
    queue_processing: int,
    tokens: int | None,
) -> HeldCounts:
    """Attribute a queue's ``pending`` jobs to the limits that hold them, as :func:`hold_of`.

    ``busy_keys`` maps each key at its limit to its pending jobs.
    """
    held = HeldCounts(by_key=sum(busy_keys.values()), busy_keys=len(busy_keys))
    rest = max(0, pending - held.by_key)
    if limits.max_concurrency and queue_processing >= limits.max_concurrency:
        held.by_concurrency = rest
    elif limits.rate is not None and tokens is not None and tokens < 1:
        held.by_rate = rest
    return held
