"""The worker SDK against a real gateway (memory provider), jobs enqueued over raw gRPC."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from jobwire.gateway import Gateway
from jobwire.v1 import queue_service_pb2
from jobwire.worker import (
    ConnectionFailedError,
    HandlerRegistry,
    JobContext,
    NonRetryableError,
    Retry,
    Worker,
    current_context,
)

from support import Producer, State, eventually, seconds

StartWorker = Callable[..., Awaitable[Worker]]
GatewayFactory = Callable[..., Awaitable[Gateway]]

# Failed attempts come back almost at once, so retry tests stay short.
FAST_RETRY = {"retry": {"initial_backoff": 0.02, "max_backoff": 0.1, "jitter": 0}}
pytestmark = pytest.mark.gateway(provider=FAST_RETRY)

JSON = "application/json"


async def stats(producer: Producer, queue: str = "default") -> queue_service_pb2.QueueStats:
    request = queue_service_pb2.GetQueueStatsRequest(queue=queue)
    return (await producer.stub.GetQueueStats(request)).queues[0]


async def wait_for_workers(producer: Producer, count: int) -> None:
    async def connected() -> bool:
        return (await stats(producer)).workers >= count

    await eventually(connected)


# Results ----------------------------------------------------------------------------------


async def test_handlers_complete_jobs_with_results(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    threads: list[int] = []

    @registry.handler("add")
    async def add(ctx: JobContext) -> int:
        assert current_context() is ctx
        return int(ctx.payload["a"] + ctx.payload["b"])

    @registry.handler("echo")
    def echo(ctx: JobContext) -> bytes:
        threads.append(threading.get_ident())
        assert current_context() is ctx
        assert ctx.payload == b"\x00\x01"  # not JSON: handed over as bytes
        return ctx.raw_payload

    @registry.handler("nothing")
    async def nothing(ctx: JobContext) -> None:
        return None

    worker = await start_worker(registry)
    add_job = await producer.enqueue("add", b'{"a": 1, "b": 2}', content_type=JSON)
    echo_job = await producer.enqueue("echo", b"\x00\x01", content_type="application/x-raw")
    nothing_job = await producer.enqueue("nothing")

    added = await producer.wait_state(add_job.id, State.STATE_COMPLETED)
    assert (added.result, added.attempt, added.worker_id) == (b"3", 1, worker.worker_id)
    echoed = await producer.wait_state(echo_job.id, State.STATE_COMPLETED)
    assert echoed.result == b"\x00\x01"
    assert threads
    assert threads[0] != threading.get_ident()  # sync handlers run in threads
    done = await producer.wait_state(nothing_job.id, State.STATE_COMPLETED)
    assert not done.HasField("result")


async def test_results_are_json_encoded(producer: Producer, start_worker: StartWorker) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    def handle(ctx: JobContext) -> dict[str, Any]:
        return {"id": ctx.id, "tags": ["a", "é"], "n": None}

    await start_worker(registry)
    job = await producer.enqueue("t")
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert done.result == f'{{"id":"{job.id}","tags":["a","é"],"n":null}}'.encode()


async def test_unserializable_result_fails_without_retries(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> object:
        return object()

    await start_worker(registry)
    job = await producer.enqueue("t", max_retries=3)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.attempt == 1
    assert dead.last_error.type == "SerializationError"


async def test_progress_is_recorded_on_the_job(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    def handle(ctx: JobContext) -> None:
        for step in range(1, 11):
            ctx.progress(step, 10, f"step {step}")

    await start_worker(registry)
    job = await producer.enqueue("t")
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    # Throttled, but the last update is sent before the ack.
    assert (done.progress.current, done.progress.total, done.progress.message) == (
        10,
        10,
        "step 10",
    )


# Concurrency and credits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "concurrency", "max_in_flight"),
    [("async", 10, 3), ("async", 2, 8), ("sync", 3, 6)],
)
async def test_thousand_jobs_through_two_workers_within_limits(
    producer: Producer,
    start_worker: StartWorker,
    kind: str,
    concurrency: int,
    max_in_flight: int,
) -> None:
    registry = HandlerRegistry()
    lock = threading.Lock()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    handled: Counter[str] = Counter()

    def enter(ctx: JobContext) -> None:
        with lock:
            running[ctx.worker_id] += 1
            peak[ctx.worker_id] = max(peak[ctx.worker_id], running[ctx.worker_id])
            handled[ctx.id] += 1

    def leave(ctx: JobContext) -> None:
        with lock:
            running[ctx.worker_id] -= 1

    if kind == "async":

        @registry.handler("t")
        async def handle_async(ctx: JobContext) -> None:
            enter(ctx)
            await asyncio.sleep(0.001)
            leave(ctx)

    else:

        @registry.handler("t")
        def handle_sync(ctx: JobContext) -> None:
            enter(ctx)
            time.sleep(0.001)
            leave(ctx)

    workers = [
        await start_worker(registry, concurrency=concurrency, max_in_flight=max_in_flight)
        for _ in range(2)
    ]
    await wait_for_workers(producer, 2)
    request = queue_service_pb2.EnqueueJobsRequest(
        requests=[queue_service_pb2.EnqueueJobRequest(type="t") for _ in range(1000)]
    )
    await producer.stub.EnqueueJobs(request)

    async def all_completed() -> bool:
        return (await stats(producer)).completed >= 1000

    await eventually(all_completed, timeout=60, interval=0.05)

    limit = min(concurrency, max_in_flight)
    assert len(handled) == 1000
    assert set(handled.values()) == {1}
    assert set(peak) == {w.worker_id for w in workers}  # both took jobs
    assert all(1 <= p <= limit for p in peak.values()), (peak, limit)
    assert max(peak.values()) > 1  # and ran them concurrently


# Failures -----------------------------------------------------------------------------------


async def test_failing_handler_is_retried_then_dead(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    attempts: list[int] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"boom {ctx.attempt}")

    await start_worker(registry)
    job = await producer.enqueue("t", max_retries=2)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert attempts == [1, 2, 3]
    assert dead.attempt == 3
    assert (dead.last_error.type, dead.last_error.message) == ("ValueError", "boom 3")
    assert "Traceback" in dead.last_error.details
    assert "in handle" in dead.last_error.details


async def test_sync_handler_failure_is_retried(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    def handle(ctx: JobContext) -> int:
        if ctx.attempt < 3:
            raise ConnectionError("flaky")
        return ctx.attempt

    await start_worker(registry)
    job = await producer.enqueue("t", max_retries=5)
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert (done.attempt, done.result) == (3, b"3")
    assert done.last_error.type == "ConnectionError"


async def test_retry_waits_for_its_delay(producer: Producer, start_worker: StartWorker) -> None:
    registry = HandlerRegistry()
    starts: list[float] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        starts.append(time.monotonic())
        if ctx.attempt == 1:
            raise Retry(delay=0.3, message="not yet")
        return "ok"

    await start_worker(registry)
    job = await producer.enqueue("t")
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert done.attempt == 2
    assert (done.last_error.type, done.last_error.message) == ("Retry", "not yet")
    # The gateway's own backoff is 20 ms here: the gap is Retry's delay.
    assert starts[1] - starts[0] >= 0.28


async def test_non_retryable_error_is_dead_on_first_attempt(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    class InvalidAddress(NonRetryableError):
        """The e-mail address is invalid."""

    @registry.handler("t")
    def handle(ctx: JobContext) -> None:
        raise InvalidAddress

    await start_worker(registry)
    job = await producer.enqueue("t", max_retries=5)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.attempt == 1
    assert dead.last_error.type == "InvalidAddress"
    assert dead.last_error.message == "The e-mail address is invalid."
    assert not dead.last_error.retryable


async def test_invalid_json_payload_is_dead_on_first_attempt(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> Any:
        return ctx.payload

    await start_worker(registry)
    job = await producer.enqueue("t", b"{not json", content_type=JSON, max_retries=5)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.attempt == 1
    assert dead.last_error.type == "SerializationError"


# Timeouts -----------------------------------------------------------------------------------


async def test_timeout_cancels_the_handler_and_retries(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    cancelled: list[str | None] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(ctx.cancel_reason)
                raise
        return ctx.attempt

    await start_worker(registry)
    job = await producer.enqueue("t", timeout=seconds(0.3), max_retries=1)
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert (done.attempt, done.result) == (2, b"2")
    assert done.last_error.type == "TIMEOUT"
    assert cancelled == ["job timed out"]


async def test_timeout_without_retries_is_dead(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    await start_worker(registry)
    job = await producer.enqueue("t", timeout=seconds(0.2), max_retries=0)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.last_error.type == "TIMEOUT"


async def test_sync_handler_timeout_marks_cancelled_and_keeps_its_slot(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    events: list[str] = []

    @registry.handler("t")
    def handle(ctx: JobContext) -> str:
        events.append(f"start {ctx.attempt}")
        if ctx.attempt == 1:
            ctx.cancel_event.wait(10)
            events.append(f"end 1 cancelled={ctx.cancelled}")
            time.sleep(0.1)  # still busy: attempt 2 must wait for this thread
            events.append("exit 1")
            return "dropped"
        return "second"

    await start_worker(registry, concurrency=1)
    job = await producer.enqueue("t", timeout=seconds(0.3), max_retries=1)
    done = await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert (done.attempt, done.result) == (2, b'"second"')
    assert events == ["start 1", "end 1 cancelled=True", "exit 1", "start 2"]


# Leases -------------------------------------------------------------------------------------


async def test_heartbeats_keep_a_long_job_leased(
    gateway_factory: GatewayFactory, start_worker: StartWorker
) -> None:
    gateway = await gateway_factory(server={"lease_duration": 1}, provider=FAST_RETRY)
    registry = HandlerRegistry()
    calls: Counter[str] = Counter()

    @registry.handler("async")
    async def handle_async(ctx: JobContext) -> str:
        calls[ctx.id] += 1
        await asyncio.sleep(3)
        return "done"

    @registry.handler("sync")
    def handle_sync(ctx: JobContext) -> str:
        calls[ctx.id] += 1
        time.sleep(3)
        return "done"

    # Two credits only: a redelivery would need both back, and show in `calls`.
    worker = await start_worker(registry, target=gateway.address, max_in_flight=2)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        producer = Producer(channel)
        jobs = [await producer.enqueue("async"), await producer.enqueue("sync")]
        for job in jobs:
            done = await producer.wait_state(job.id, State.STATE_COMPLETED, timeout=10)
            assert (done.attempt, done.worker_id) == (1, worker.worker_id)
    assert calls == {jobs[0].id: 1, jobs[1].id: 1}


async def test_expired_lease_is_answered_so_its_credit_returns(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory(server={"lease_duration": 1}, provider=FAST_RETRY)
    registry = HandlerRegistry()
    reasons: list[str | None] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            # Blocking the loop stops the heartbeats: the lease expires.
            time.sleep(1.5)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                reasons.append(ctx.cancel_reason)
                raise
        return ctx.attempt

    # Its own loop in a thread, so the blocked loop is not the gateway's.
    worker = Worker(gateway.address, registry=registry, concurrency=1, max_in_flight=1)
    await asyncio.to_thread(worker.start)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            producer = Producer(channel)
            job = await producer.enqueue("t")
            # One credit: attempt 2 arrives only if the worker answered for attempt 1.
            done = await producer.wait_state(job.id, State.STATE_COMPLETED, timeout=15)
        assert (done.attempt, done.result) == (2, b"2")
        assert reasons == ["lease expired"]
    finally:
        await asyncio.to_thread(worker.stop, 10)


async def test_cancel_stops_a_running_async_handler(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    started = asyncio.Event()
    seen: list[tuple[bool, str | None]] = []

    @registry.handler("forever")
    async def forever(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append((ctx.cancelled, ctx.cancel_reason))
            raise

    @registry.handler("quick")
    async def quick(ctx: JobContext) -> str:
        return "ok"

    await start_worker(registry, concurrency=1, max_in_flight=1)
    job = await producer.enqueue("forever")
    async with asyncio.timeout(10):
        await started.wait()
    await producer.stub.CancelJob(queue_service_pb2.CancelJobRequest(id=job.id, reason="stop"))
    await eventually(lambda: bool(seen))
    assert seen == [(True, "job cancelled")]
    assert (await producer.get(job.id)).state == State.STATE_CANCELLED
    # The slot and the credit came back: the next job runs.
    after = await producer.enqueue("quick")
    await producer.wait_state(after.id, State.STATE_COMPLETED)


async def test_cancel_marks_a_sync_handler_cancelled(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    started = threading.Event()
    seen: list[str | None] = []

    @registry.handler("t")
    def handle(ctx: JobContext) -> str:
        started.set()
        while not ctx.cancel_event.wait(0.01):
            pass
        seen.append(ctx.cancel_reason)
        return "ignored"

    await start_worker(registry)
    job = await producer.enqueue("t")
    await eventually(started.is_set)
    await producer.stub.CancelJob(queue_service_pb2.CancelJobRequest(id=job.id))
    await eventually(lambda: bool(seen))
    assert seen == ["job cancelled"]
    cancelled = await producer.get(job.id)
    assert cancelled.state == State.STATE_CANCELLED
    assert not cancelled.HasField("result")


# Lifecycle ----------------------------------------------------------------------------------


async def test_async_with_inside_a_running_loop(producer: Producer, gateway: Gateway) -> None:
    registry = HandlerRegistry()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        return "ok"

    worker = Worker(gateway.address, registry=registry)
    assert not worker.is_running
    async with worker as running:
        assert running is worker
        assert worker.is_running
        job = await producer.enqueue("t")
        await producer.wait_state(job.id, State.STATE_COMPLETED)
    assert not worker.is_running
    # A stopped worker can run again.
    async with worker:
        job = await producer.enqueue("t")
        await producer.wait_state(job.id, State.STATE_COMPLETED)


async def test_graceful_shutdown_finishes_delivered_jobs_and_takes_no_more(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    release = asyncio.Event()
    running = 0

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        nonlocal running
        running += 1
        await release.wait()
        return "finished"

    worker = await start_worker(registry, concurrency=2, max_in_flight=4)
    jobs = [await producer.enqueue("t") for _ in range(10)]
    await eventually(lambda: running == 2)

    async def four_delivered() -> bool:  # two running, two waiting locally
        return (await stats(producer)).processing == 4

    await eventually(four_delivered)

    shutdown = asyncio.create_task(worker.shutdown())
    await asyncio.sleep(0.05)
    assert not shutdown.done()  # waiting for the handlers
    release.set()
    async with asyncio.timeout(10):
        await shutdown

    assert not worker.is_running
    states = [await producer.get(job.id) for job in jobs]
    completed = [j for j in states if j.state == State.STATE_COMPLETED]
    assert len(completed) == 4  # the delivered ones, including the two that waited
    assert all(j.result == b'"finished"' for j in completed)
    # The worker sent `drain` first, so the acks of its last jobs pulled in
    # nothing: the other jobs were never delivered, no attempt was spent.
    pending = [j for j in states if j.state == State.STATE_PENDING]
    assert len(pending) == 6
    assert all(j.attempt == 0 for j in pending)


async def test_shutdown_timeout_cancels_handlers_and_releases_their_jobs(
    producer: Producer, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    started = asyncio.Event()
    reasons: list[str | None] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reasons.append(ctx.cancel_reason)
            raise

    worker = await start_worker(registry, shutdown_timeout=0.2)
    job = await producer.enqueue("t")
    async with asyncio.timeout(10):
        await started.wait()
        await worker.shutdown()
    assert reasons == ["worker shutting down"]
    released = await producer.get(job.id)
    assert released.state == State.STATE_PENDING
    assert released.attempt == 1


async def test_shutdown_while_the_gateway_is_unreachable() -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    worker = Worker(address, registry=registry)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)  # a few failed attempts
    assert not task.done()
    async with asyncio.timeout(5):
        await worker.shutdown()
        await task


async def test_start_and_stop_from_a_thread(producer: Producer, gateway: Gateway) -> None:
    registry = HandlerRegistry()
    handler_threads: list[str] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        handler_threads.append(threading.current_thread().name)
        return "ok"

    worker = Worker(gateway.address, registry=registry)
    await asyncio.to_thread(worker.start)  # returns at once, worker runs in the background
    try:
        with pytest.raises(RuntimeError, match="already started"):
            worker.start()
        job = await producer.enqueue("t")
        await producer.wait_state(job.id, State.STATE_COMPLETED)
    finally:
        await asyncio.to_thread(worker.stop, 10)
    assert handler_threads == [f"jobwire-worker-{worker.worker_id}"]
    assert not worker.is_running


async def test_shutdown_from_another_loop_stops_a_started_worker(gateway: Gateway) -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    worker = Worker(gateway.address, registry=registry)
    await asyncio.to_thread(worker.start)
    try:
        assert worker.is_running
        async with asyncio.timeout(10):
            await worker.shutdown()  # from this loop, not the worker's
        assert not worker.is_running
    finally:
        await asyncio.to_thread(worker.stop, 10)


async def test_invalid_open_is_fatal(gateway: Gateway) -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    worker = Worker(gateway.address, registry=registry, max_in_flight=1_000_000)
    with pytest.raises(ConnectionFailedError) as raised:
        await asyncio.wait_for(worker.run(), 10)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "max_in_flight" in raised.value.details
    assert raised.value.reason == "INVALID_ARGUMENT"
    assert raised.value.metadata == {"field": "open.max_in_flight"}
    assert not worker.is_running


async def test_fatal_error_ends_the_async_with_block(gateway: Gateway) -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    body_cancelled = False

    async def serve() -> None:
        nonlocal body_cancelled
        async with Worker(gateway.address, registry=registry, max_in_flight=1_000_000):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                body_cancelled = True
                raise

    with pytest.raises(ConnectionFailedError, match="INVALID_ARGUMENT"):
        await serve()
    assert body_cancelled
    # The cancellation used to end the block was taken back.
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


# Reconnects ---------------------------------------------------------------------------------


async def test_drain_lets_running_jobs_finish(
    gateway_factory: GatewayFactory, start_worker: StartWorker
) -> None:
    gateway = await gateway_factory()
    registry = HandlerRegistry()
    started = asyncio.Event()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    await start_worker(registry, target=gateway.address)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        job = await Producer(channel).enqueue("t")
    async with asyncio.timeout(10):
        await started.wait()
        await gateway.stop(grace=5)  # drains, waits for the worker's ack
    record = await gateway.provider.get(job.id)
    assert record is not None
    assert record.state.name == "COMPLETED"
    assert record.result == b'"finished"'


async def test_reconnects_with_the_same_id_after_the_gateway_restarts(
    gateway_factory: GatewayFactory, start_worker: StartWorker
) -> None:
    first = await gateway_factory()
    address = first.address
    registry = HandlerRegistry()

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        return ctx.worker_id

    worker = await start_worker(registry, target=address)
    async with grpc.aio.insecure_channel(address) as channel:
        job = await Producer(channel).enqueue("t")
        await Producer(channel).wait_state(job.id, State.STATE_COMPLETED)
    await first.stop(grace=1)

    second = await gateway_factory(server={"listen": address})
    async with grpc.aio.insecure_channel(address) as channel:
        producer = Producer(channel)
        job = await producer.enqueue("t")
        done = await producer.wait_state(job.id, State.STATE_COMPLETED, timeout=15)
    assert second.address == address
    assert done.worker_id == worker.worker_id
    assert done.result == f'"{worker.worker_id}"'.encode()


async def test_jobs_of_a_lost_stream_are_dropped_not_answered(
    gateway_factory: GatewayFactory, start_worker: StartWorker
) -> None:
    """A gateway gone mid-job: the handler is cancelled, the worker reconnects and goes on."""
    first = await gateway_factory()
    address = first.address
    registry = HandlerRegistry()
    started = asyncio.Event()
    reasons: list[str | None] = []

    @registry.handler("t")
    async def handle(ctx: JobContext) -> str:
        if ctx.payload == b"block":
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                reasons.append(ctx.cancel_reason)
                raise
        return "ok"

    await start_worker(registry, target=address)
    async with grpc.aio.insecure_channel(address) as channel:
        await Producer(channel).enqueue("t", b"block")
        async with asyncio.timeout(10):
            await started.wait()
    await first.stop(grace=0.2)  # the handler does not finish within the grace period
    await eventually(lambda: bool(reasons))
    assert reasons[0] in ("stream closed", "worker shutting down")

    await gateway_factory(server={"listen": address})
    async with grpc.aio.insecure_channel(address) as channel:
        producer = Producer(channel)
        job = await producer.enqueue("t", b"fine")
        await producer.wait_state(job.id, State.STATE_COMPLETED, timeout=15)
