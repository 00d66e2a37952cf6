"""``jobwire.v1.QueueConfig`` to and from :class:`~jobwire.gateway._limits.QueueLimits`.

Checks what an ``UpdateQueueConfig`` sends: every error is
``InvalidArgumentError`` naming the field (``config.rate.text``) and what is
accepted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from google.protobuf import field_mask_pb2

from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._limits import (
    MAX_COUNT,
    KeyPolicy,
    QueueLimits,
    RateLimit,
    check_limit,
    check_weight,
    parse_rate,
    rate_limit,
)
from jobwire.gateway._models import duration
from jobwire.v1 import flow_control_pb2

Config = flow_control_pb2.QueueConfig
MASKABLE = (
    "max_concurrency_per_key",
    "max_concurrency",
    "rate",
    "on_busy_key",
    "key_weights",
    "fifo_across_keys",
)
"""The fields an ``update_mask`` may name."""

_POLICIES = {
    Config.KEY_POLICY_UNSPECIFIED: KeyPolicy.QUEUE,
    Config.KEY_POLICY_QUEUE: KeyPolicy.QUEUE,
    Config.KEY_POLICY_CANCEL_IN_PROGRESS: KeyPolicy.CANCEL_IN_PROGRESS,
    Config.KEY_POLICY_CANCEL_NEWEST: KeyPolicy.CANCEL_NEWEST,
}
_NUMBERS = {
    KeyPolicy.QUEUE: Config.KEY_POLICY_QUEUE,
    KeyPolicy.CANCEL_IN_PROGRESS: Config.KEY_POLICY_CANCEL_IN_PROGRESS,
    KeyPolicy.CANCEL_NEWEST: Config.KEY_POLICY_CANCEL_NEWEST,
}


def to_proto(queue: str, limits: QueueLimits) -> flow_control_pb2.QueueConfig:
    """The message form of a queue's limits."""
    msg = Config(
        queue=queue,
        max_concurrency_per_key=limits.max_concurrency_per_key,
        max_concurrency=limits.max_concurrency,
        on_busy_key=_NUMBERS[limits.on_busy_key],
        key_weights=dict(limits.key_weights),
        fifo_across_keys=limits.fifo_across_keys,
    )
    if limits.rate is not None:
        rate = limits.rate
        msg.rate.text = rate.text
        msg.rate.count = rate.count
        msg.rate.period.CopyFrom(duration(rate.period))
        msg.rate.burst = rate.burst
    return msg


def updated(
    current: QueueLimits, msg: flow_control_pb2.QueueConfig, mask: field_mask_pb2.FieldMask
) -> QueueLimits:
    """``current`` with the fields ``mask`` names (all when empty) taken from ``msg``."""
    paths = list(mask.paths) or list(MASKABLE)
    for n, path in enumerate(paths):
        if path not in MASKABLE:
            raise InvalidArgumentError(
                f"update_mask.paths[{n}]", f"unknown field {path!r}; use {', '.join(MASKABLE)}"
            )
    changes: dict[str, Any] = {}
    if "max_concurrency_per_key" in paths:
        changes["max_concurrency_per_key"] = _limit(msg.max_concurrency_per_key, "per_key")
    if "max_concurrency" in paths:
        changes["max_concurrency"] = _limit(msg.max_concurrency, "")
    if "rate" in paths:
        changes["rate"] = _rate(msg.rate) if msg.HasField("rate") else None
    if "on_busy_key" in paths:
        policy = _POLICIES.get(msg.on_busy_key)
        if policy is None:
            raise InvalidArgumentError(
                "config.on_busy_key",
                f"unknown policy {msg.on_busy_key}; use queue, cancel_in_progress or cancel_newest",
            )
        changes["on_busy_key"] = policy
    if "key_weights" in paths:
        for key, weight in msg.key_weights.items():
            try:
                check_weight(key, weight)
            except ValueError as error:
                raise InvalidArgumentError("config.key_weights", str(error)) from None
        changes["key_weights"] = dict(msg.key_weights)
    if "fifo_across_keys" in paths:
        changes["fifo_across_keys"] = msg.fifo_across_keys
    return replace(current, **changes)


def _limit(value: int, suffix: str) -> int:
    field = "config.max_concurrency" + (f"_{suffix}" if suffix else "")
    try:
        return check_limit(value)
    except ValueError as error:
        raise InvalidArgumentError(field, str(error)) from None


def _rate(msg: flow_control_pb2.RateLimit) -> RateLimit:
    if not 0 <= msg.burst <= MAX_COUNT:
        raise InvalidArgumentError(
            "config.rate.burst", f"must be 0 (1) to {MAX_COUNT}, got {msg.burst}"
        )
    if msg.text:
        if msg.count or msg.HasField("period"):
            raise InvalidArgumentError(
                "config.rate.text", "give either text or count and period, not both"
            )
        try:
            return parse_rate(msg.text, msg.burst)
        except ValueError as error:
            raise InvalidArgumentError("config.rate.text", str(error)) from None
    period = msg.period.seconds + msg.period.nanos / 1e9
    try:
        return rate_limit(msg.count, period, msg.burst)
    except ValueError as error:
        field = "config.rate.count" if msg.count < 1 else "config.rate.period"
        raise InvalidArgumentError(field, f"{error} (or give text, e.g. '100/minute')") from None
