"""What the RabbitMQ provider does on the broker: declarations, checks, acks, dead letters.

The contract suite (``backends.BACKENDS``) proves the semantics; these tests
look at the broker itself, on the session's vhost, each under a queue prefix
of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest

from jobwire.gateway.providers.rabbitmq import _stream as rabbitmq_stream
from jobwire.v1 import job_pb2, worker_service_pb2

from conftest import GatewayFactory
from rabbitmq_support import RabbitVhost, rabbitmqctl
from support import Producer, RawWorker, State, eventually
from timing import QUIET

Request = worker_service_pb2.StreamJobsRequest
OpenWorker = Callable[..., Awaitable[RawWorker]]


@pytest.fixture
def provider_kind() -> str:
    """The ``gateway`` fixture's gateways run on RabbitMQ here."""
    return "rabbitmq"


@pytest.fixture
def prefix(rabbitmq_vhost: RabbitVhost, request: pytest.FixtureRequest) -> str:
    return rabbitmq_vhost.prefix_of(request.node.nodeid)


@pytest.fixture
async def amqp(rabbitmq_vhost: RabbitVhost) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain aio-pika channel on the session's vhost."""
    connection = await aio_pika.connect(rabbitmq_vhost.url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


def start(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_declare_false_a_missing_queue_is_refused_at_start_naming_it(
    rabbitmq_vhost: RabbitVhost, prefix: str, tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text(
        f'[provider]\ntype = "rabbitmq"\nurl = "{rabbitmq_vhost.url}"\n'
        f'queue_prefix = "{prefix}"\ndeclare = false\n'
    )
    result = start(config)
    assert result.returncode == 1
    assert f"queue '{prefix}dead' does not exist on the broker" in result.stderr
    assert "provider.declare = true" in result.stderr
    assert "Traceback" not in result.stderr
    assert "guest:guest" not in result.stderr


async def test_a_queue_of_another_type_is_refused_clearly(
    amqp: aio_pika.abc.AbstractChannel, rabbitmq_vhost: RabbitVhost, prefix: str, tmp_path: Path
) -> None:
    await amqp.declare_queue(f"{prefix}default", durable=True)  # classic, no arguments
    config = tmp_path / "jobwire.toml"
    config.write_text(
        f'[provider]\ntype = "rabbitmq"\nurl = "{rabbitmq_vhost.url}"\nqueue_prefix = "{prefix}"\n'
    )
    result = await asyncio.to_thread(start, config)
    assert result.returncode == 1
    assert "RabbitMQ refused a declaration" in result.stderr
    assert "inequivalent arg" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_declared_queues_are_durable_quorum_queues_with_their_dead_letters(
    gateway_factory: GatewayFactory, rabbitmq_vhost: RabbitVhost, prefix: str
) -> None:
    await gateway_factory(
        provider={"type": "rabbitmq", "url": rabbitmq_vhost.url, "queue_prefix": prefix}
    )
    out = await asyncio.to_thread(
        rabbitmqctl,
        "list_queues",
        "-p",
        rabbitmq_vhost.name,
        "name",
        "type",
        "durable",
        "arguments",
    )
    rows = {line.split("\t")[0]: line for line in out.splitlines() if line.startswith(prefix)}
    assert "quorum\ttrue" in rows[f"{prefix}default"]
    assert f"{prefix}dead" in rows[f"{prefix}default"]  # its dead-letter routing key
    assert "classic\ttrue" in rows[f"{prefix}dead"]


async def test_out_of_order_acks_leave_nothing_unacked_and_dead_jobs_in_the_dead_letters(
    producer: Producer,
    raw_worker: OpenWorker,
    rabbitmq_vhost: RabbitVhost,
    prefix: str,
) -> None:
    jobs = [await producer.enqueue(max_retries=0) for _ in range(20)]
    worker = await raw_worker(max_in_flight=20)
    items = await worker.jobs(20)
    assert {item.job.id for item in items} == {job.id for job in jobs}
    # Every other one first, then the rest, newest first: acks out of order.
    await worker.ack(*(item.lease_id for item in items[::2]))
    assert (await worker.result()).ok
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    nacks = [Request.Nack.Item(lease_id=item.lease_id, failure=failure) for item in items[1::2]]
    await worker.send(Request(nack=Request.Nack(items=nacks)))
    await worker.expect("ack_result")

    async def settled() -> bool:
        out = await asyncio.to_thread(
            rabbitmqctl,
            "list_queues",
            "-p",
            rabbitmq_vhost.name,
            "name",
            "messages_ready",
            "messages_unacknowledged",
        )
        counts = {row[0]: row[1:] for row in (line.split("\t") for line in out.splitlines())}
        return counts[f"{prefix}default"] == ["0", "0"] and counts[f"{prefix}dead"] == ["10", "0"]

    await eventually(settled, timeout=30)


async def test_rejects_and_ack_runs_reach_the_broker_in_the_order_given(
    producer: Producer,
    raw_worker: OpenWorker,
    rabbitmq_vhost: RabbitVhost,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Per block of 20 deliveries: the first 5 failed (rejected to the dead
    # letters), then the other 15 acked, which the gateway sends as one
    # multiple ack covering the rejected tags too. Ten blocks at once give
    # aiormq's write queue (10 frames) more than it holds: a reject overtaken by
    # the ack run would ack its message away and close the channel.
    jobs = [await producer.enqueue(max_retries=0) for _ in range(200)]
    worker = await raw_worker(max_in_flight=200)
    items = await worker.jobs(200)
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    failed: list[str] = []
    for block in range(0, 200, 20):
        rejected, acked = items[block : block + 5], items[block + 5 : block + 20]
        failed += [item.job.id for item in rejected]
        nacks = [Request.Nack.Item(lease_id=item.lease_id, failure=failure) for item in rejected]
        await worker.send(Request(nack=Request.Nack(items=nacks)))
        await worker.ack(*(item.lease_id for item in acked))
    for _ in range(20):
        await worker.expect("ack_result")

    async def settled() -> bool:
        out = await asyncio.to_thread(
            rabbitmqctl, "list_queues", "-p", rabbitmq_vhost.name, "name", "messages"
        )
        counts = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
        return counts.get(f"{prefix}default") == "0" and counts.get(f"{prefix}dead") == "50"

    await eventually(settled, timeout=30)
    states = {job.id: (await producer.get(job.id)).state for job in jobs}
    assert {job_id for job_id, state in states.items() if state == State.STATE_DEAD} == set(failed)
    assert sum(state == State.STATE_COMPLETED for state in states.values()) == 150
    assert "closed the channel" not in caplog.text


async def unacked_is(vhost: RabbitVhost, queue: str, count: int) -> bool:
    """Whether the broker counts ``count`` unacked messages of ``queue``."""
    out = await asyncio.to_thread(
        rabbitmqctl, "list_queues", "-p", vhost.name, "name", "messages_unacknowledged"
    )
    counts = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    return counts.get(queue) == str(count)


async def test_a_stream_s_deliveries_beyond_its_credits_go_back_once_when_it_ends(
    producer: Producer, raw_worker: OpenWorker, rabbitmq_vhost: RabbitVhost, prefix: str
) -> None:
    jobs = [await producer.enqueue() for _ in range(30)]
    busy = await raw_worker(worker_id="busy", max_in_flight=5)
    leased = {item.job.id for item in await busy.jobs(5)}
    # Its channel holds as many again, unleased, for its next claim.
    await eventually(lambda: unacked_is(rabbitmq_vhost, f"{prefix}default", 10), timeout=30)
    busy.drop()
    other = await raw_worker(worker_id="other", max_in_flight=30)
    items = await other.jobs(30)
    assert sorted(item.job.id for item in items) == sorted(job.id for job in jobs)
    # The leases the stream held lost an attempt; the jobs it only held did not,
    # and none came back twice (its channel closed after the copies' acks).
    attempts = {item.job.id: item.attempt for item in items}
    assert {job_id for job_id, attempt in attempts.items() if attempt == 2} == leased
    assert all(attempts[job.id] == 1 for job in jobs if job.id not in leased)
    await other.nothing("delivery", within=QUIET)


async def test_a_waiting_stream_gets_a_busy_stream_s_surplus_at_once(
    producer: Producer,
    raw_worker: OpenWorker,
    rabbitmq_vhost: RabbitVhost,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Held for a minute otherwise: only the waiting stream's call moves them.
    monkeypatch.setattr(rabbitmq_stream, "HOLD", 60.0)
    busy = await raw_worker(worker_id="busy", max_in_flight=2)
    jobs = [await producer.enqueue() for _ in range(4)]
    taken = await busy.jobs(2)
    await eventually(lambda: unacked_is(rabbitmq_vhost, f"{prefix}default", 4), timeout=30)
    idle = await raw_worker(worker_id="idle", max_in_flight=10)
    items = await idle.jobs(2)
    assert {item.job.id for item in [*taken, *items]} == {job.id for job in jobs}
    assert all(item.attempt == 1 for item in items)
