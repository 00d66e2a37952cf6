"""The worker's side of the StreamJobs protocol, against a scripted WorkerService on loopback.

The real gateway cannot be made to misbehave on cue; this fake answers exactly
what each test tells it to, and records every frame the worker sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest

from jobwire.v1 import job_pb2, worker_service_pb2_grpc
from jobwire.worker import (
    Backoff,
    ConnectionFailedError,
    HandlerRegistry,
    JobContext,
    Worker,
)

from support import Request, Response, eventually, seconds

FAST_RECONNECT = Backoff(initial=timedelta(seconds=0.01), maximum=timedelta(seconds=0.05))


class FakeSession:
    """One stream as the fake gateway sees it."""

    def __init__(self, context: grpc.aio.ServicerContext[Request, Response]) -> None:
        self.context = context
        self.metadata = dict(context.invocation_metadata() or ())
        self.frames: asyncio.Queue[Request | None] = asyncio.Queue()
        self.received: list[Request] = []
        # Cleared, the fake stops reading after the frame it waits for, so
        # gRPC flow control pushes back on the worker's writes.
        self.reading = asyncio.Event()
        self.reading.set()
        self.outcome: asyncio.Future[tuple[grpc.StatusCode, str] | None] = (
            asyncio.get_running_loop().create_future()
        )

    async def read_all(self) -> None:
        while True:
            await self.reading.wait()
            frame: object = await self.context.read()
            if not isinstance(frame, Request):  # EOF: the worker closed its side
                self.frames.put_nowait(None)
                return
            self.received.append(frame)
            self.frames.put_nowait(frame)

    async def expect(self, kind: str, timeout: float = 5.0) -> Request:
        """Next frame, which must be of ``kind``; "eof" expects the worker's half-close."""
        async with asyncio.timeout(timeout):
            frame = await self.frames.get()
        if kind == "eof":
            assert frame is None, frame
            return Request()
        assert frame is not None, f"expected {kind}, got EOF"
        assert frame.WhichOneof("kind") == kind, frame
        return frame

    async def send(self, frame: Response) -> None:
        await self.context.write(frame)

    async def accept(self, lease: float = 30, heartbeat: float = 10, credits: int = 0) -> Request:
        """Expect `open`, answer `opened`; return the open frame."""
        frame = await self.expect("open")
        opened = Response.Opened(
            session_id=f"session-{id(self)}",
            lease_duration=seconds(lease),
            heartbeat_interval=seconds(heartbeat),
            max_in_flight=credits or frame.open.max_in_flight,
        )
        await self.send(Response(opened=opened))
        return frame

    async def deliver(self, *jobs: job_pb2.Job) -> list[str]:
        frame = Response()
        leases = []
        for job in jobs:
            lease_id = f"{job.id}.1"
            frame.delivery.items.add(job=job, lease_id=lease_id, attempt=1)
            leases.append(lease_id)
        await self.send(frame)
        return leases

    def end(self, code: grpc.StatusCode | None = None, details: str = "") -> None:
        """Finish the RPC: OK, or with ``code``."""
        if not self.outcome.done():
            self.outcome.set_result(None if code is None else (code, details))


class FakeGateway(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self) -> None:
        self.sessions: asyncio.Queue[FakeSession] = asyncio.Queue()

    async def StreamJobs(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]
        session = FakeSession(context)
        reader = asyncio.create_task(session.read_all())
        self.sessions.put_nowait(session)
        try:
            outcome = await session.outcome
            if outcome is not None:
                await context.abort(*outcome)
        finally:
            reader.cancel()

    async def ListWorkers(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def DrainWorker(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def next_session(self, timeout: float = 5.0) -> FakeSession:
        async with asyncio.timeout(timeout):
            return await self.sessions.get()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeGateway, str]]:
    # A fixed, small flow-control window: a large frame from the worker then
    # waits until the fake reads (see FakeSession.reading).
    server = grpc.aio.server(
        options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 64 * 1024)]
    )
    gateway = FakeGateway()
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield gateway, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def job(n: int, job_type: str = "t", **fields: Any) -> job_pb2.Job:
    return job_pb2.Job(id=f"job-{n}", type=job_type, queue="default", **fields)


def registry_of(**handlers: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    for job_type, fn in handlers.items():
        registry.register(job_type, fn)
    return registry


async def noop(ctx: JobContext) -> None:
    pass


async def test_open_frame_and_token(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    worker = Worker(
        address,
        registry=registry_of(a=noop, b=noop),
        queues=["q1", "q2"],
        concurrency=3,
        worker_id="w-1",
        lease_duration=timedelta(seconds=45),
        token="secret",
        labels={"team": "data"},
    )
    async with worker:
        session = await gateway.next_session()
        frame = (await session.accept()).open
        assert session.metadata["authorization"] == "Bearer secret"
        assert frame.worker_id == "w-1"
        assert list(frame.queues) == ["q1", "q2"]
        assert list(frame.job_types) == ["a", "b"]
        assert frame.max_in_flight == 12
        assert frame.lease_duration.ToTimedelta() == timedelta(seconds=45)
        labels = dict(frame.labels)
        assert labels["team"] == "data"
        assert {"hostname", "pid", "sdk", "sdk_version"} <= labels.keys()
        assert (frame.host, frame.pid) == (socket.gethostname(), os.getpid())
        assert frame.sdk.startswith("jobwire-worker-python/")
        session.end()


async def test_unauthenticated_is_fatal_with_its_reason(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    worker = Worker(address, registry=registry_of(t=noop), reconnect=FAST_RECONNECT)
    task = asyncio.create_task(worker.run())
    session = await gateway.next_session()
    await session.expect("open")
    session.end(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid token")
    with pytest.raises(ConnectionFailedError) as raised:
        await asyncio.wait_for(task, 5)
    assert raised.value.code == "UNAUTHENTICATED"
    assert raised.value.details == "missing or invalid token"
    assert gateway.sessions.empty()  # not retried


async def test_first_frame_other_than_opened_is_fatal(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    worker = Worker(address, registry=registry_of(t=noop))
    task = asyncio.create_task(worker.run())
    session = await gateway.next_session()
    await session.expect("open")
    await session.send(Response(drain=Response.Drain()))
    with pytest.raises(ConnectionFailedError, match="PROTOCOL_ERROR"):
        await asyncio.wait_for(task, 5)
    session.end()


async def test_finished_jobs_are_acked_in_batches(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake

    async def handle(ctx: JobContext) -> int:
        return int(ctx.id.split("-")[1])

    async with Worker(address, registry=registry_of(t=handle), concurrency=50):
        session = await gateway.next_session()
        await session.accept()
        leases = await session.deliver(*(job(n) for n in range(50)))
        acked: dict[str, bytes] = {}
        frames = 0
        while len(acked) < 50:
            frame = await session.expect("ack")
            frames += 1
            for item in frame.ack.items:
                assert item.lease_id not in acked
                assert item.result_content_type == "application/json"
                acked[item.lease_id] = item.result
        assert sorted(acked) == sorted(leases)
        assert acked["job-7.1"] == b"7"
        # 50 jobs finishing together go out in a few frames, not 50.
        assert frames <= 3
        session.end()


async def test_failures_are_nacked_and_raw_bytes_acked(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake

    async def fail(ctx: JobContext) -> None:
        raise RuntimeError("nope")

    def raw(ctx: JobContext) -> bytes:
        return b"\xff"

    async with Worker(address, registry=registry_of(fail=fail, raw=raw)):
        session = await gateway.next_session()
        await session.accept()
        await session.deliver(job(1, "fail"))
        nack = (await session.expect("nack")).nack.items[0]
        assert (nack.lease_id, nack.failure.type, nack.failure.message) == (
            "job-1.1",
            "RuntimeError",
            "nope",
        )
        assert nack.retryable
        await session.deliver(job(2, "raw"))
        ack = (await session.expect("ack")).ack.items[0]
        assert (ack.result, ack.result_content_type) == (b"\xff", "application/octet-stream")
        session.end()


async def test_jobs_of_unknown_types_are_nacked_as_non_retryable(
    fake: tuple[FakeGateway, str],
) -> None:
    gateway, address = fake
    async with Worker(address, registry=registry_of(t=noop)):
        session = await gateway.next_session()
        await session.accept()
        await session.deliver(job(1, "pdf:render"))
        nack = (await session.expect("nack")).nack.items[0]
        assert not nack.retryable
        assert nack.failure.type == "HandlerNotFoundError"
        assert "'pdf:render'" in nack.failure.message
        session.end()


async def test_heartbeat_extends_leases_of_long_jobs(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    release = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        await release.wait()

    async with Worker(address, registry=registry_of(t=slow)):
        session = await gateway.next_session()
        await session.accept(lease=0.3, heartbeat=0.1)
        [lease] = await session.deliver(job(1))
        for _ in range(3):
            extend = await session.expect("extend_lease")
            assert list(extend.extend_lease.lease_ids) == [lease]
        release.set()
        assert (await session.expect("ack")).ack.items[0].lease_id == lease
        session.end()


async def test_refused_answers_are_logged(
    fake: tuple[FakeGateway, str], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, address = fake
    async with Worker(address, registry=registry_of(t=noop)):
        session = await gateway.next_session()
        await session.accept()
        [lease] = await session.deliver(job(1))
        await session.expect("ack")
        refused = Response()
        refused.ack_result.items.add(
            lease_id=lease, ok=False, reason="LEASE_EXPIRED", message="too late"
        )
        with caplog.at_level(logging.WARNING, logger="jobwire.worker"):
            await session.send(refused)
            # The warning is all the worker does about it; wait until it shows.
            async with asyncio.timeout(5):
                while True:
                    if caplog.records:
                        break
                    await asyncio.sleep(0.01)
        assert "LEASE_EXPIRED" in caplog.text
        assert lease in caplog.text
        session.end()


async def test_expired_lease_is_answered_to_return_its_credit(
    fake: tuple[FakeGateway, str],
) -> None:
    gateway, address = fake
    reasons: list[str | None] = []

    async def slow(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reasons.append(ctx.cancel_reason)
            raise

    async with Worker(address, registry=registry_of(t=slow)):
        session = await gateway.next_session()
        await session.accept()
        [lease] = await session.deliver(job(1))
        await asyncio.sleep(0.05)
        revoked = Response.LeaseRevoked(
            lease_id=lease, job_id="job-1", reason=Response.LeaseRevoked.REASON_EXPIRED
        )
        await session.send(Response(lease_revoked=revoked))
        nack = (await session.expect("nack")).nack.items[0]
        assert (nack.lease_id, nack.failure.type) == (lease, "LEASE_EXPIRED")
        assert reasons == ["lease expired"]
        session.end()


async def test_cancelled_lease_is_not_answered(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    started = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    async with Worker(address, registry=registry_of(t=slow, quick=noop)):
        session = await gateway.next_session()
        await session.accept()
        [lease] = await session.deliver(job(1))
        await started.wait()
        revoked = Response.LeaseRevoked(
            lease_id=lease, job_id="job-1", reason=Response.LeaseRevoked.REASON_CANCELLED
        )
        await session.send(Response(lease_revoked=revoked))
        [quick] = await session.deliver(job(2, "quick"))
        # The next frame answers the quick job only: nothing for the cancelled lease.
        assert [i.lease_id for i in (await session.expect("ack")).ack.items] == [quick]
        session.end()


async def test_drain_finishes_jobs_closes_and_reconnects(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    release = asyncio.Event()

    async def slow(ctx: JobContext) -> str:
        await release.wait()
        return "done"

    async with Worker(
        address, registry=registry_of(t=slow), worker_id="w-1", reconnect=FAST_RECONNECT
    ):
        session = await gateway.next_session()
        await session.accept()
        [lease] = await session.deliver(job(1))
        await session.send(Response(drain=Response.Drain(grace_period=seconds(5))))
        await asyncio.sleep(0.05)
        release.set()
        assert (await session.expect("ack")).ack.items[0].lease_id == lease
        await session.expect("eof")  # the worker closed its side after answering
        session.end()

        again = await gateway.next_session()
        assert (await again.accept()).open.worker_id == "w-1"
        again.end()


async def test_stop_runs_jobs_crossing_the_drain_but_none_once_closing(
    fake: tuple[FakeGateway, str],
) -> None:
    # A job started after the worker decided to close could not be answered:
    # the gateway would hand it out again and it would run twice.
    gateway, address = fake
    releases = {"job-1": asyncio.Event(), "job-2": asyncio.Event()}
    started: list[str] = []

    async def slow(ctx: JobContext) -> bytes:
        started.append(ctx.id)
        await releases[ctx.id].wait()
        # Job 1's answer outgrows the stream's flow-control window, so the
        # worker is still writing it when the late delivery arrives.
        return b"x" * (3 * 1024 * 1024 if ctx.id == "job-1" else 0)

    worker = Worker(address, registry=registry_of(t=slow), worker_id="w-1")
    async with worker:
        session = await gateway.next_session()
        await session.accept()
        [first] = await session.deliver(job(1))
        await eventually(lambda: started == ["job-1"])
        stopping = asyncio.create_task(worker.shutdown())
        await session.expect("drain")
        # Sent before the gateway read the drain: still run and answered.
        [crossing] = await session.deliver(job(2))
        await eventually(lambda: started == ["job-1", "job-2"])
        session.reading.clear()
        releases["job-2"].set()
        assert [i.lease_id for i in (await session.expect("ack")).ack.items] == [crossing]
        releases["job-1"].set()
        await asyncio.sleep(0.2)  # the worker blocks writing job 1's answer
        # Idle now, so the close is decided: a late delivery is left to the gateway.
        await session.deliver(job(3))
        await asyncio.sleep(0.2)
        session.reading.set()
        assert [i.lease_id for i in (await session.expect("ack")).ack.items] == [first]
        await session.expect("eof")
        session.end()
        await stopping
    assert started == ["job-1", "job-2"]


async def test_stream_errors_reconnect_with_the_same_worker_id(
    fake: tuple[FakeGateway, str],
) -> None:
    gateway, address = fake
    async with Worker(
        address, registry=registry_of(t=noop), worker_id="w-1", reconnect=FAST_RECONNECT
    ):
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, None):
            session = await gateway.next_session()
            assert (await session.accept()).open.worker_id == "w-1"
            session.end(code, "transient")
        last = await gateway.next_session()
        await last.accept()
        last.end()


async def test_results_after_the_stream_died_are_dropped(fake: tuple[FakeGateway, str]) -> None:
    gateway, address = fake
    started = threading.Event()
    finished = threading.Event()
    seen: list[bool] = []

    def stubborn(ctx: JobContext) -> str:
        if ctx.id == "job-1":
            # A sync handler cannot be interrupted; it only learns through ctx.cancelled.
            started.set()
            ctx.cancel_event.wait(5)
            seen.append(ctx.cancelled)
            finished.set()
        return "result"

    async with Worker(
        address, registry=registry_of(t=stubborn), concurrency=1, reconnect=FAST_RECONNECT
    ):
        session = await gateway.next_session()
        await session.accept()
        await session.deliver(job(1))
        await asyncio.to_thread(started.wait, 5)
        session.end(grpc.StatusCode.UNAVAILABLE, "gateway gone")

        again = await gateway.next_session()
        await again.accept()
        assert await asyncio.to_thread(finished.wait, 5)
        assert seen == [True]
        # The slot came back once the thread returned: a new job runs, and only it is acked.
        [lease] = await again.deliver(job(2))
        assert [i.lease_id for i in (await again.expect("ack")).ack.items] == [lease]
        again.end()
