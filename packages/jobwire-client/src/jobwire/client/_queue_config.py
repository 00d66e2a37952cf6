"""A queue's flow control as both clients show and change it (`QueueConfig`).

The twins' methods (`get_queue_config`, `update_queue_config`,
`list_queue_configs`) send what is built here and convert what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jobwire.client._errors import InvalidArgumentError
from jobwire.client._operations import KEEP
from jobwire.v1 import flow_control_pb2 as F
from jobwire.v1 import queue_service_pb2 as Q

KeyPolicy = Literal["queue", "cancel_in_progress", "cancel_newest"]
"""What an enqueue does when its concurrency key already has its limit of jobs."""

_POLICY_NUMBERS: dict[str, F.QueueConfig.KeyPolicy.ValueType] = {
    "queue": F.QueueConfig.KEY_POLICY_QUEUE,
    "cancel_in_progress": F.QueueConfig.KEY_POLICY_CANCEL_IN_PROGRESS,
    "cancel_newest": F.QueueConfig.KEY_POLICY_CANCEL_NEWEST,
}
_POLICY_NAMES = {number: name for name, number in _POLICY_NUMBERS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """A queue's flow control (what `get_queue_config` returns); zero limits mean none."""

    queue: str
    #: Most jobs of one concurrency key processing at once.
    max_concurrency_per_key: int = 0
    #: Most jobs of the queue processing at once.
    max_concurrency: int = 0
    #: Deliveries admitted per period, e.g. "100/minute"; None: no rate limit.
    rate: str | None = None
    #: Deliveries `rate` admits at once after an idle spell.
    burst: int = 1
    #: What an enqueue does when its key is at `max_concurrency_per_key`.
    on_busy_key: KeyPolicy = "queue"
    #: Deliveries per round of fair dispatch of the keys named (others: 1).
    key_weights: Mapping[str, int] = field(default_factory=dict, hash=False)
    #: Fair dispatch off: the oldest ready job across keys goes first (limits still hold).
    fifo_across_keys: bool = False

    @classmethod
    def from_proto(cls, proto: F.QueueConfig) -> QueueConfig:
        """Converts a `jobwire.v1.QueueConfig`."""
        rate = proto.rate if proto.HasField("rate") else None
        policy: Any = _POLICY_NAMES.get(proto.on_busy_key, "queue")
        return cls(
            queue=proto.queue,
            max_concurrency_per_key=proto.max_concurrency_per_key,
            max_concurrency=proto.max_concurrency,
            rate=rate.text if rate is not None else None,
            burst=rate.burst if rate is not None else 1,
            on_busy_key=policy,
            key_weights=dict(proto.key_weights),
            fifo_across_keys=proto.fifo_across_keys,
        )


def update_request(
    queue: str,
    *,
    max_concurrency_per_key: Any = KEEP,
    max_concurrency: Any = KEEP,
    rate: Any = KEEP,
    burst: Any = KEEP,
    on_busy_key: Any = KEEP,
    key_weights: Any = KEEP,
    fifo_across_keys: Any = KEEP,
) -> Q.UpdateQueueConfigRequest:
    """The `UpdateQueueConfig` changing the fields given (`KEEP` leaves one as it is).

    Raises:
        InvalidArgumentError: `burst` without `rate`, or an unknown `on_busy_key`.
    """
    config = F.QueueConfig(queue=queue)
    paths: list[str] = []
    if max_concurrency_per_key is not KEEP:
        config.max_concurrency_per_key = max_concurrency_per_key or 0
        paths.append("max_concurrency_per_key")
    if max_concurrency is not KEEP:
        config.max_concurrency = max_concurrency or 0
        paths.append("max_concurrency")
    if burst is not KEEP and (rate is KEEP or rate is None):
        raise InvalidArgumentError(
            "give `burst` with `rate`, e.g. rate='100/minute', burst=10",
            metadata={"field": "burst"},
        )
    if rate is not KEEP:
        if rate is not None:
            config.rate.text = rate
            config.rate.burst = 0 if burst is KEEP else burst
        paths.append("rate")
    if on_busy_key is not KEEP:
        if on_busy_key not in _POLICY_NUMBERS:
            raise InvalidArgumentError(
                f"on_busy_key must be one of {', '.join(_POLICY_NUMBERS)}, got {on_busy_key!r}",
                metadata={"field": "on_busy_key"},
            )
        config.on_busy_key = _POLICY_NUMBERS[on_busy_key]
        paths.append("on_busy_key")
    if key_weights is not KEEP:
        config.key_weights.update(key_weights or {})
        paths.append("key_weights")
    if fifo_across_keys is not KEEP:
        config.fifo_across_keys = bool(fifo_across_keys)
        paths.append("fifo_across_keys")
    if not paths:
        raise InvalidArgumentError(
            "name at least one setting to change, e.g. max_concurrency_per_key=2",
            metadata={"field": "config"},
        )
    request = Q.UpdateQueueConfigRequest(config=config)
    request.update_mask.paths.extend(paths)
    return request
