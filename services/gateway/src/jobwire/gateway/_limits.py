"""A queue's flow control as the gateway holds it: limits, rate and key policy.

Plain data shared by the configuration (``[queues.NAME]``), the admin RPCs
(``QueueConfig``) and the providers that enforce it; the rules that use it
are in :mod:`jobwire.gateway.providers._flow`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_WEIGHT = 1000
"""Largest per-key weight of fair dispatch."""
MAX_CONCURRENCY_KEY_BYTES = 256
"""Longest concurrency key, in UTF-8 bytes."""
MAX_COUNT = 1_000_000_000
"""Largest count, burst and limit of a queue's flow control."""
MAX_PERIOD = 366 * 86400.0
"""Longest period of a rate, in seconds."""

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_NAMES = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
RATE_FORMS = '"COUNT/PERIOD" such as "100/minute", "5/second", "1000/hour" or "10/30s"'
"""What a rate's text may look like, for error messages."""


class KeyPolicy(StrEnum):
    """What an enqueue does when its concurrency key already has its limit of jobs."""

    QUEUE = "queue"
    """The new job waits for a slot of its key (the default)."""
    CANCEL_IN_PROGRESS = "cancel_in_progress"
    """The newest wins: the key's oldest pending or processing jobs are cancelled."""
    CANCEL_NEWEST = "cancel_newest"
    """The new job is cancelled at once."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` deliveries per ``period`` seconds; ``burst`` at once after an idle spell."""

    count: int
    period: float
    burst: int = 1

    @property
    def per_second(self) -> float:
        """Tokens the bucket gains each second."""
        return self.count / self.period

    @property
    def text(self) -> str:
        """``"100/minute"``: the rate as ``parse_rate`` reads it back."""
        name = _NAMES.get(self.period)
        if name is not None:
            return f"{self.count}/{name}"
        if self.period < 1:
            return f"{self.count}/{self.period * 1000:g}ms"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: str, burst: int = 1) -> RateLimit:
    """The rate ``text`` says (``"100/minute"``); ValueError naming the accepted forms."""
    match = _RATE.match(text.lower())
    unit = None
    if match is not None:  # "minutes" as well as "minute"
        unit = _UNITS.get(match[3]) or _UNITS.get(match[3].removesuffix("s"))
    if match is None or unit is None:
        raise ValueError(f"expected {RATE_FORMS}, got {text[:40]!r}")
    count, period = int(match[1]), float(match[2] or 1) * unit
    return rate_limit(count, period, burst)


def rate_limit(count: int, period: float, burst: int = 1) -> RateLimit:
    """A checked :class:`RateLimit`; ValueError saying which part is out of range."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"the count of a rate must be 1 to {MAX_COUNT}, got {count}")
    if not math.isfinite(period) or not 0.001 <= period <= MAX_PERIOD:
        raise ValueError(f"the period of a rate must be 1ms to 366 days, got {period:g}s")
    if not 0 <= burst <= MAX_COUNT:
        raise ValueError(f"burst must be 0 (1) to {MAX_COUNT}, got {burst}")
    return RateLimit(count, period, burst or 1)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """The flow control of one queue; zero limits mean none."""

    max_concurrency_per_key: int = 0
    """Most jobs of one concurrency key processing at once."""
    max_concurrency: int = 0
    """Most jobs of the queue processing at once."""
    rate: RateLimit | None = None
    """Deliveries admitted per period."""
    on_busy_key: KeyPolicy = KeyPolicy.QUEUE
    """What an enqueue does when its key is at ``max_concurrency_per_key``."""
    key_weights: Mapping[str, int] = field(default_factory=dict)
    """Deliveries per round of fair dispatch of the keys named; others get 1."""
    fifo_across_keys: bool = False
    """Fair dispatch off: the oldest ready job across keys goes first."""

    @property
    def limited(self) -> bool:
        """Whether any limit holds jobs back (weights and the policy alone do not)."""
        return bool(self.max_concurrency_per_key or self.max_concurrency or self.rate)

    @property
    def empty(self) -> bool:
        """Whether this is the configuration of a queue never configured."""
        return self == NO_LIMITS

    def weight(self, key: str) -> int:
        """Deliveries ``key`` gets per round of fair dispatch."""
        return self.key_weights.get(key, 1) if self.key_weights else 1

    def as_json(self) -> dict[str, Any]:
        """A JSON object a durable provider stores (:meth:`from_json` reads it back)."""
        rate = self.rate
        return {
            "max_concurrency_per_key": self.max_concurrency_per_key,
            "max_concurrency": self.max_concurrency,
            "rate": None if rate is None else [rate.count, rate.period, rate.burst],
            "on_busy_key": self.on_busy_key.value,
            "key_weights": dict(self.key_weights),
            "fifo_across_keys": self.fifo_across_keys,
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> QueueLimits:
        """The limits :meth:`as_json` stored."""
        rate = stored.get("rate")
        return cls(
            max_concurrency_per_key=int(stored.get("max_concurrency_per_key", 0)),
            max_concurrency=int(stored.get("max_concurrency", 0)),
            rate=None if rate is None else RateLimit(int(rate[0]), float(rate[1]), int(rate[2])),
            on_busy_key=KeyPolicy(stored.get("on_busy_key", KeyPolicy.QUEUE.value)),
            key_weights={str(k): int(v) for k, v in stored.get("key_weights", {}).items()},
            fifo_across_keys=bool(stored.get("fifo_across_keys", False)),
        )


NO_LIMITS = QueueLimits()
"""The flow control of a queue never configured."""


def check_limit(value: int) -> int:
    """Return ``value`` if it can be a concurrency limit (0: none); else ValueError."""
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"must be 0 (no limit) to {MAX_COUNT}, got {value}")
    return value


def check_weight(key: str, weight: int) -> int:
    """Return ``weight`` if a key may have it; else ValueError."""
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"the weight of key {key[:64]!r} must be 1 to {MAX_WEIGHT}, got {weight}")
    check_key(key)
    return weight


def check_key(key: str) -> str:
    """Return ``key`` if it can be a concurrency key; else ValueError."""
    if len(key.encode()) > MAX_CONCURRENCY_KEY_BYTES:
        raise ValueError(
            f"at most {MAX_CONCURRENCY_KEY_BYTES} bytes (UTF-8), got {len(key.encode())}"
        )
    if not key.isprintable():
        raise ValueError("must be printable characters")
    return key
