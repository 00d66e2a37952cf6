"""Queue configs: from TOML and over RPC, changed live, bad input refused, naming the field."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from integration.flow.flow_support import Config, configure, enqueue_all, on_flow_providers
from integration.gateway.test_bad_input import expect_error

from jobwire.gateway import StartError
from jobwire.gateway.testing import running_gateway
from jobwire.v1 import queue_service_pb2

from backends import provider_settings
from support import Producer, RawWorker
from timing import LIMIT_CHANGE_SEEN, QUIET

OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOML_QUEUES = {
    "reports": {
        "max_concurrency_per_key": 2,
        "rate": "100/minute",
        "burst": 5,
        "on_busy_key": "cancel_newest",
        "key_weights": {"big": 3},
    },
    "batch": {"max_concurrency": 4, "fifo_across_keys": True},
}


@pytest.mark.gateway(queues=TOML_QUEUES)
@on_flow_providers
async def test_the_toml_tables_are_the_queues_configs(producer: Producer) -> None:
    config = (await producer.stub.GetQueueConfig(Q.GetQueueConfigRequest(queue="reports"))).config
    assert (config.queue, config.max_concurrency_per_key, config.max_concurrency) == (
        "reports",
        2,
        0,
    )
    assert (config.rate.text, config.rate.count, config.rate.burst) == ("100/minute", 100, 5)
    assert config.rate.period.seconds == 60
    assert config.on_busy_key == Config.KEY_POLICY_CANCEL_NEWEST
    assert dict(config.key_weights) == {"big": 3}
    assert not config.fifo_across_keys
    listed = (await producer.stub.ListQueueConfigs(Q.ListQueueConfigsRequest())).configs
    assert [c.queue for c in listed] == ["batch", "reports"]
    assert listed[0].fifo_across_keys
    plain = (await producer.stub.GetQueueConfig(Q.GetQueueConfigRequest(queue="other"))).config
    assert plain == Config(queue="other", on_busy_key=Config.KEY_POLICY_QUEUE)


@pytest.mark.gateway(queues=TOML_QUEUES)
@on_flow_providers
async def test_an_update_changes_the_masked_fields_or_all(producer: Producer) -> None:
    config = await configure(producer, "reports", "max_concurrency", max_concurrency=7)
    assert (config.max_concurrency, config.max_concurrency_per_key) == (7, 2)
    assert config.rate.text == "100/minute"
    config = await configure(producer, "reports", max_concurrency_per_key=1)
    assert config == Config(
        queue="reports", max_concurrency_per_key=1, on_busy_key=Config.KEY_POLICY_QUEUE
    )
    config = await configure(producer, "reports", rate={"count": 3, "period": {"seconds": 2}})
    assert (config.rate.text, config.rate.burst) == ("3/2s", 1)
    # A queue whose limits are all gone is no longer listed.
    await configure(producer, "batch")
    listed = (await producer.stub.ListQueueConfigs(Q.ListQueueConfigsRequest())).configs
    assert [c.queue for c in listed] == ["reports"]


@pytest.mark.gateway(queues={"live": {"max_concurrency_per_key": 1}})
@on_flow_providers
async def test_a_limit_changed_by_rpc_is_honoured_at_once(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await enqueue_all(producer, "live", ["k"] * 10)
    worker = await raw_worker(queues=["live"], job_types=["work"], max_in_flight=10)
    first = await worker.jobs(1)
    await worker.nothing("delivery", QUIET)
    await configure(producer, "live", "max_concurrency_per_key", max_concurrency_per_key=3)
    changed = time.monotonic()
    more = await worker.jobs(2, timeout=LIMIT_CHANGE_SEEN)
    assert time.monotonic() - changed < LIMIT_CHANGE_SEEN
    await worker.nothing("delivery", QUIET)
    # Lowered again: the three running finish, and one more starts.
    await configure(producer, "live", "max_concurrency_per_key", max_concurrency_per_key=1)
    await worker.ack(*(item.lease_id for item in first + more))
    assert len(await worker.jobs(1)) == 1
    await worker.nothing("delivery", QUIET)


BAD_CONFIGS: list[tuple[dict[str, Any], list[str], str, str]] = [
    ({"rate": {"text": "fast"}}, [], "config.rate.text", '"100/minute"'),
    ({"max_concurrency_per_key": -1}, [], "config.max_concurrency_per_key", "0 (no limit)"),
    ({"max_concurrency": -5}, [], "config.max_concurrency", "got -5"),
    ({"rate": {"count": 0, "period": {"seconds": 1}}}, [], "config.rate.count", "1 to 1000000000"),
    ({"rate": {"count": 5}}, [], "config.rate.period", "1ms to 366 days"),
    ({"rate": {"text": "5/second", "burst": -1}}, [], "config.rate.burst", "got -1"),
    ({"key_weights": {"k": 0}}, [], "config.key_weights", "1 to 1000"),
    ({"on_busy_key": 9}, [], "config.on_busy_key", "cancel_newest"),
    ({}, ["max_per_key"], "update_mask.paths[0]", "max_concurrency_per_key"),
]


@pytest.mark.parametrize(("fields", "paths", "field", "words"), BAD_CONFIGS)
async def test_a_bad_config_is_invalid_argument_naming_the_field(
    producer: Producer, fields: dict[str, Any], paths: list[str], field: str, words: str
) -> None:
    request = Q.UpdateQueueConfigRequest(config=Config(queue="reports", **fields))
    request.update_mask.paths.extend(paths)
    info = await expect_error(
        producer.stub.UpdateQueueConfig(request), INVALID, "INVALID_ARGUMENT", field, words
    )
    assert info.metadata["field"] == field


async def test_a_config_without_a_queue_and_a_key_too_long_are_refused(
    producer: Producer,
) -> None:
    await expect_error(
        producer.stub.UpdateQueueConfig(Q.UpdateQueueConfigRequest()),
        INVALID,
        "INVALID_ARGUMENT",
        "config.queue",
    )
    long_key = "é" * 129  # 258 bytes
    info = await expect_error(
        producer.enqueue("work", concurrency_key=long_key),
        INVALID,
        "INVALID_ARGUMENT",
        "concurrency_key",
        "at most 256 bytes",
    )
    assert info.metadata["field"] == "concurrency_key"
    batch = Q.EnqueueJobsRequest(
        requests=[
            Q.EnqueueJobRequest(type="work"),
            Q.EnqueueJobRequest(type="work", concurrency_key="x" * 257),
        ]
    )
    info = await expect_error(producer.stub.EnqueueJobs(batch), INVALID, "INVALID_ARGUMENT")
    assert info.metadata["field"] == "requests[1].concurrency_key"


@pytest.mark.contract
@pytest.mark.providers("rabbitmq")
async def test_a_provider_without_flow_control_refuses_keys_and_limits(
    producer: Producer, request: pytest.FixtureRequest
) -> None:
    failed = grpc.StatusCode.FAILED_PRECONDITION
    await expect_error(
        producer.enqueue("work", concurrency_key="customer-7"),
        failed,
        "FLOW_CONTROL_UNSUPPORTED",
        "concurrency_key: the rabbitmq provider does not enforce flow control yet",
    )
    update = Q.UpdateQueueConfigRequest(config=Config(queue="reports", max_concurrency=2))
    await expect_error(
        producer.stub.UpdateQueueConfig(update), failed, "FLOW_CONTROL_UNSUPPORTED", "config"
    )
    config = (await producer.stub.GetQueueConfig(Q.GetQueueConfigRequest(queue="reports"))).config
    assert not config.max_concurrency
    provider = provider_settings("rabbitmq", request)
    with pytest.raises(StartError, match=r"\[queues.reports\]: the rabbitmq provider does not"):
        async with running_gateway(provider=provider, queues={"reports": {"rate": "5/second"}}):
            pass
