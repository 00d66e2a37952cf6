"""The ``[queues.NAME]`` tables: each queue's flow control, declared in the gateway's TOML."""

from __future__ import annotations

from typing import Self

from pydantic import field_validator, model_validator

from jobwire.gateway._config_types import QUEUE_NAME, Section
from jobwire.gateway._limits import (
    MAX_COUNT,
    KeyPolicy,
    QueueLimits,
    check_limit,
    check_weight,
    parse_rate,
)


class QueueSettings(Section):
    """One ``[queues.NAME]`` table: limits applied at start (``UpdateQueueConfig`` changes them)."""

    max_concurrency_per_key: int = 0
    """Most jobs of one concurrency key processing at once; 0: no limit."""
    max_concurrency: int = 0
    """Most jobs of the queue processing at once; 0: no limit."""
    rate: str | None = None
    """Deliveries admitted per period: "100/minute", "5/second", "10/30s"; None: no limit."""
    burst: int = 1
    """Deliveries ``rate`` admits at once after an idle spell."""
    on_busy_key: KeyPolicy = KeyPolicy.QUEUE
    """What an enqueue does when its key is at its limit: "queue" (wait),
    "cancel_in_progress" (cancel the key's oldest jobs) or "cancel_newest"."""
    key_weights: dict[str, int] = {}
    """Deliveries per round of fair dispatch of the keys named (others: 1)."""
    fifo_across_keys: bool = False
    """Fair dispatch off: the oldest ready job across keys goes first (limits still hold)."""

    @field_validator("max_concurrency_per_key", "max_concurrency")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        return check_limit(value)

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("burst")
    @classmethod
    def _check_burst(cls, value: int) -> int:
        if not 1 <= value <= MAX_COUNT:
            raise ValueError(f"must be 1 to {MAX_COUNT}, got {value}")
        return value

    @field_validator("key_weights")
    @classmethod
    def _check_weights(cls, value: dict[str, int]) -> dict[str, int]:
        for key, weight in value.items():
            check_weight(key, weight)
        return value

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> Self:
        if self.burst != 1 and self.rate is None:
            raise ValueError('burst needs rate, e.g. rate = "100/minute"')
        return self

    def limits(self) -> QueueLimits:
        """The table as the providers take it."""
        return QueueLimits(
            max_concurrency_per_key=self.max_concurrency_per_key,
            max_concurrency=self.max_concurrency,
            rate=parse_rate(self.rate, self.burst) if self.rate is not None else None,
            on_busy_key=self.on_busy_key,
            key_weights=dict(self.key_weights),
            fifo_across_keys=self.fifo_across_keys,
        )


def check_queue_names(queues: dict[str, QueueSettings]) -> dict[str, QueueSettings]:
    """Return ``queues`` if every table names a valid queue; else ValueError."""
    for name in queues:
        if not QUEUE_NAME.match(name):
            raise ValueError(
                f"[queues.{name[:64]}]: invalid queue name: use 1-128 letters, digits, "
                "'.', '_', ':' or '-'"
            )
    return queues
