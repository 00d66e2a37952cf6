"""The SQS provider against moto server over real HTTP: what only SQS has.

The semantics every provider shares run in ``integration/gateway`` on memory
and SQS alike; these tests check how the SQS provider does it: messages,
visibility, the dead-letter queue, delays, records, errors.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
from integration.sqs.conftest import ClientFactory, SqsGateway

from jobwire.gateway import SqsProviderSettings
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers.sqs import TABLES, SqsProvider
from jobwire.v1 import queue_service_pb2

from conftest import GatewayFactory
from proxy import TcpProxy
from sqs_support import REGION, SqsQueues, queue_counts, sqs_client
from support import Producer, RawWorker, Request, Response, State, eventually, seconds
from timing import EXTENSIBLE_LEASE, FRAME_TIMEOUT, MOTO_REDELIVERY

ROOT = Path(__file__).resolve().parents[3]
Q = queue_service_pb2
Revoked = Response.LeaseRevoked
LEASE = EXTENSIBLE_LEASE.of("sqs")


def gateway_config(directory: Path, queues: SqsQueues, database_url: str) -> Path:
    """A gateway TOML config on ``queues`` with records and scheduler in ``database_url``."""
    urls = "".join(f'{name} = "{url}"\n' for name, url in queues.urls.items())
    config = directory / "jobwire.toml"
    config.write_text(
        "[provider]\n"
        'type = "sqs"\n'
        f'region = "{REGION}"\n'
        f'endpoint_url = "{queues.endpoint}"\n'
        f'dead_letter_queue_url = "{queues.dead_letter_queue_url}"\n'
        "[provider.queue_urls]\n"
        f"{urls}"
        "[scheduler]\n"
        f'database_url = "{database_url}"\n'
    )
    return config


@contextmanager
def gateway_process(config: Path) -> Iterator[str]:
    """``python -m jobwire.gateway --config CONFIG``; yields its address, kills it at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    command = [sys.executable, "-m", "jobwire.gateway", "--listen", "127.0.0.1:0"]
    with subprocess.Popen(
        [*command, "--config", str(config), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=config.parent,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "listening on" in line, line
            yield line.split()[-1]
        finally:
            process.kill()
            process.wait(10)


@contextmanager
def worker_process(address: str, *job_types: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``python -m jobwire.worker`` process running this directory's handlers."""
    types = [arg for job_type in job_types for arg in ("--job-type", job_type)]
    command = [sys.executable, "-m", "jobwire.worker", "tests.integration.sqs.handlers:registry"]
    with subprocess.Popen(
        [*command, "--gateway", address, "--log-level", "WARNING", *types],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    ) as process:
        try:
            yield process
        finally:
            process.kill()
            process.wait(10)


def provider_of(gateway: object) -> SqsProvider:
    provider = getattr(gateway, "provider", None)
    assert isinstance(provider, SqsProvider)
    return provider


async def empty(queues: SqsQueues, queue: str = "default") -> bool:
    return not any((await queue_counts(queues.endpoint, queues.urls[queue])).values())


async def test_enqueue_ack_deletes_the_message_and_records_the_result(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    job = await client.producer.enqueue(payload=b'{"n": 1}', attributes={"trace": "t-1"})
    counts = await queue_counts(sqs_queues.endpoint, sqs_queues.urls["default"])
    assert counts["ApproximateNumberOfMessages"] == 1
    worker = await client.worker()
    [item] = await worker.jobs(1)
    assert (item.job.id, item.job.payload, item.attempt) == (job.id, b'{"n": 1}', 1)
    assert dict(item.job.attributes) == {"trace": "t-1"}
    await worker.ack(item.lease_id, result=b"42")
    assert (await worker.result()).ok
    await eventually(lambda: empty(sqs_queues))
    # Committed to the database, not only in the gateway's buffer.
    settings = gateway.settings.provider
    assert isinstance(settings, SqsProviderSettings)
    assert settings.database_url
    records = JobRecords(settings.database_url, tables=TABLES, dedup=DedupRule(0), retention=1)
    try:
        [stored] = await records.load([job.id])
    finally:
        await records.engine.dispose()
    assert (stored.state.name, stored.result, stored.attempt) == ("COMPLETED", b"42", 1)


async def test_long_poll_wakes_at_once_and_only_while_workers_have_credits(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    wait = 5
    gateway = await sqs_gateway(wait_time=wait)
    provider = provider_of(gateway)
    client = await connect(gateway)
    assert provider.polling == {}
    worker = await client.worker(max_in_flight=3)
    await eventually(lambda: provider.polling == {"default": 3})
    await worker.nothing("delivery", within=0.3)  # a long poll waits, parked in SQS
    latencies = []
    for _ in range(5):
        start = time.perf_counter()
        await client.producer.enqueue()
        [item] = await worker.jobs(1)
        latencies.append(time.perf_counter() - start)
        await worker.ack(item.lease_id)
        await worker.result()
    # A poll that the message did not wake would answer only at the end of its
    # wait: every delivery came long before that.
    assert max(latencies) < wait / 2, latencies
    worker.drop()
    # The receive call in flight ends with its wait; no new one starts.
    await eventually(lambda: provider.polling == {}, timeout=2 * wait)


async def test_visibility_brings_a_job_back_when_its_gateway_dies(
    sqs_queues: SqsQueues,
    postgres_url: str,
    sqs_gateway: SqsGateway,
    connect: ClientFactory,
    tmp_path: Path,
) -> None:
    """A gateway killed with a lease out: SQS shows the message again when its visibility ends."""
    config = gateway_config(tmp_path, sqs_queues, postgres_url)
    with gateway_process(config) as address:
        async with grpc.aio.insecure_channel(address) as channel:
            doomed = await RawWorker(channel, worker_id="doomed", lease_duration=seconds(2)).open()
            job = await Producer(channel).enqueue()
            [first] = await doomed.jobs(1)
            assert first.attempt == 1
            killed_at = time.monotonic()
    # The process is gone with its lease; another gateway takes over.
    gateway = await sqs_gateway(scheduler={"database_url": postgres_url})
    client = await connect(gateway)
    survivor = await client.worker(worker_id="survivor")
    [again] = await survivor.jobs(1, timeout=10)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert time.monotonic() - killed_at >= 1.0  # it waited for the visibility, not less
    await survivor.ack(again.lease_id)
    done = await client.producer.wait_state(job.id, State.STATE_COMPLETED)
    assert done.attempt == 2


async def test_a_worker_killed_mid_job_gives_it_back_at_once(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    job = await client.producer.enqueue(type="sleep")
    with worker_process(gateway.address, "sleep") as process:
        await client.producer.wait_state(job.id, State.STATE_PROCESSING)
        survivor = await client.worker(worker_id="survivor", job_types=["sleep"])
        process.kill()
        [again] = await survivor.jobs(1, timeout=3)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert again.job.last_error.type == "WORKER_LOST"


async def test_extending_the_lease_keeps_a_long_job_hidden(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway(server={"min_lease_duration": 1})
    client = await connect(gateway)
    job = await client.producer.enqueue()
    busy = await client.worker(worker_id="busy", lease_duration=seconds(LEASE))
    [item] = await busy.jobs(1)
    idle = await client.worker(worker_id="idle")
    extend = Request.ExtendLease(lease_ids=[item.lease_id], lease_duration=seconds(4 * LEASE))
    await busy.send(Request(extend_lease=extend))
    await busy.expect("lease_extended")
    # Past the first lease: SQS would show the message again unless its
    # visibility was extended too.
    await idle.nothing("delivery", within=1.5 * LEASE)
    counts = await queue_counts(sqs_queues.endpoint, sqs_queues.urls["default"])
    assert counts["ApproximateNumberOfMessagesNotVisible"] == 1
    await busy.nothing("lease_revoked", within=0)
    await busy.ack(item.lease_id)
    assert (await busy.result()).ok
    done = await client.producer.wait_state(job.id, State.STATE_COMPLETED)
    assert done.attempt == 1


async def test_an_extension_counts_from_its_arrival_not_from_the_sqs_answer(
    gateway_factory: GatewayFactory, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    with TcpProxy(urlsplit(sqs_queues.endpoint).port or 80) as proxy:
        gateway = await gateway_factory(
            server={"min_lease_duration": 1},
            provider=sqs_queues.provider_settings(endpoint_url=proxy.url),
        )
        client = await connect(gateway)
        job = await client.producer.enqueue()
        worker = await client.worker(lease_duration=seconds(LEASE))
        [item] = await worker.jobs(1)
        proxy.hold()  # SQS answers nothing until released
        extend = Request.ExtendLease(lease_ids=[item.lease_id], lease_duration=seconds(4 * LEASE))
        await worker.send(Request(extend_lease=extend))
        # The first lease ends while the visibility change waits for SQS.
        await worker.nothing("lease_revoked", within=1.5 * LEASE)
        proxy.release()
        await worker.expect("lease_extended")
        await worker.ack(item.lease_id)
        assert (await worker.result()).ok
        assert (await client.producer.wait_state(job.id, State.STATE_COMPLETED)).attempt == 1


async def test_the_gateway_renews_leases_longer_than_the_visibility_timeout(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway(visibility_timeout=1)
    client = await connect(gateway)
    job = await client.producer.enqueue()
    holder = await client.worker(worker_id="holder", lease_duration=seconds(3))
    [item] = await holder.jobs(1)
    other = await client.worker(worker_id="other")
    # SQS would show the message again after 1 s; the gateway keeps it hidden.
    await other.nothing("delivery", within=2.4)
    revoked = (await holder.expect("lease_revoked", timeout=2)).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (item.lease_id, Revoked.REASON_EXPIRED)
    [again] = await other.jobs(1, timeout=3)
    assert (again.job.id, again.attempt) == (job.id, 2)


async def test_exhausted_retries_move_the_message_to_the_dead_letter_queue(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    job = await client.producer.enqueue(max_retries=1, payload=b"poison")
    worker = await client.worker()
    for attempt in (1, 2):
        [item] = await worker.jobs(1)
        assert item.attempt == attempt
        await worker.nack(item.lease_id, message=f"failure {attempt}", retry_delay=seconds(0))
        assert (await worker.result()).ok
    dead = await client.producer.wait_state(job.id, State.STATE_DEAD)
    assert (dead.attempt, dead.last_error.message) == (2, "failure 2")
    await eventually(lambda: empty(sqs_queues))
    async with sqs_client(sqs_queues.endpoint) as sqs:
        received = await sqs.receive_message(
            QueueUrl=sqs_queues.dead_letter_queue_url, WaitTimeSeconds=1
        )
    [message] = received["Messages"]
    body = json.loads(message["Body"])
    assert (body["id"], base64.b64decode(body["payload"])) == (job.id, b"poison")


async def test_a_delay_of_two_seconds_is_sqs_delay_seconds(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    worker = await client.worker()
    # Long enough that SQS still holds the message when asked, on a busy machine.
    job = await client.producer.enqueue(delay=seconds(4))
    assert job.state == State.STATE_SCHEDULED
    counts = await queue_counts(sqs_queues.endpoint, sqs_queues.urls["default"])
    assert counts["ApproximateNumberOfMessagesDelayed"] == 1
    assert await gateway.scheduler.store.get_held(job.id) is None  # type: ignore[union-attr]
    [item] = await worker.jobs(1, timeout=4 + FRAME_TIMEOUT)
    assert item.job.id == job.id
    # Never early: the delivery comes at or after the job's schedule time.
    assert time.time() >= job.schedule_time.ToNanoseconds() / 1e9


async def test_delays_beyond_fifteen_minutes_go_through_the_scheduler(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    scheduler = gateway.scheduler
    assert scheduler is not None
    assert scheduler.delay_threshold == 900
    client = await connect(gateway)
    worker = await client.worker()
    job = await client.producer.enqueue(delay=seconds(20 * 60))
    assert job.state == State.STATE_SCHEDULED
    assert await scheduler.store.get_held(job.id) is not None
    assert await empty(sqs_queues)
    assert (await client.producer.get(job.id)).state == State.STATE_SCHEDULED
    # Twenty-one minutes later, by the scheduler's clock.
    later = datetime.now(UTC) + timedelta(minutes=21)
    scheduler.clock = lambda: later
    scheduler.wake()
    [item] = await worker.jobs(1)
    assert (item.job.id, item.attempt) == (job.id, 1)


async def test_deduplication_window_and_fifo_queues(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    async with sqs_client(sqs_queues.endpoint) as sqs:
        fifo = await sqs.create_queue(
            QueueName="jobwire-ordered.fifo", Attributes={"FifoQueue": "true"}
        )
    urls = {**sqs_queues.urls, "ordered": fifo["QueueUrl"]}
    gateway = await sqs_gateway(queue_urls=urls, dedup_window=60)
    client = await connect(gateway)
    request = Q.EnqueueJobRequest(type="t", queue="ordered", deduplication_key="report-7")
    first = await client.producer.stub.EnqueueJob(request)
    worker = await client.worker(queues=["ordered"], max_in_flight=5)
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    await client.producer.wait_state(first.job.id, State.STATE_COMPLETED)
    # Finished, but within the window: still the same job.
    again = await client.producer.stub.EnqueueJob(request)
    assert (again.deduplicated, again.job.id) == (True, first.job.id)
    other = await client.producer.enqueue(queue="ordered")
    assert (await worker.jobs(1))[0].job.id == other.id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.producer.enqueue(queue="ordered", delay=seconds(5))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "delay_threshold" in (refused.value.details() or "")


async def test_a_cancelled_job_is_deleted_when_sqs_hands_it_out(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    cancelled = await client.producer.enqueue()
    await client.producer.stub.CancelJob(Q.CancelJobRequest(id=cancelled.id, reason="no"))
    kept = await client.producer.enqueue()
    worker = await client.worker(max_in_flight=5)
    [item] = await worker.jobs(1)
    assert item.job.id == kept.id
    await worker.ack(item.lease_id)
    await eventually(lambda: empty(sqs_queues), MOTO_REDELIVERY)
    await worker.nothing("delivery", within=0.2)
    assert (await client.producer.get(cancelled.id)).state == State.STATE_CANCELLED


async def test_payload_over_the_sqs_limit_is_refused_before_anything_is_sent(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway(server={"max_payload_bytes": 2 * 1024 * 1024})
    client = await connect(gateway)
    # 800 KiB: under the gateway's limit, over SQS's once base64-encoded.
    batch = Q.EnqueueJobsRequest(
        requests=[
            Q.EnqueueJobRequest(type="small"),
            Q.EnqueueJobRequest(type="big", payload=b"x" * 800 * 1024),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.producer.stub.EnqueueJobs(batch)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SQS's limit of 1048576 bytes" in (refused.value.details() or "")
    assert await empty(sqs_queues)
    assert not (await client.producer.stub.ListJobs(Q.ListJobsRequest())).jobs


async def test_queues_without_an_sqs_queue_are_a_failed_precondition(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    gateway = await sqs_gateway()
    client = await connect(gateway)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.producer.enqueue(queue="nowhere")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "provider.queue_urls" in (refused.value.details() or "")
    worker = await client.worker(queues=["nowhere"])
    assert await worker.status() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_queue_url_that_does_not_exist_fails_at_start(
    gateway_factory: GatewayFactory, sqs_queues: SqsQueues
) -> None:
    missing = sqs_queues.urls["default"].replace("jobwire-default", "jobwire-missing")
    settings = sqs_queues.provider_settings(queue_urls={"default": missing})
    with pytest.raises(
        RuntimeError, match=r"provider.queue_urls.default: SQS queue .* does not exist"
    ):
        await gateway_factory(provider=settings)
