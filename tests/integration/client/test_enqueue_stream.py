"""`enqueue` over the enqueue stream, against real gateways: outcomes per caller, threads,
a gateway stopping mid-flight, a gateway without the stream, a notebook's running loop."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    GatewayUnavailableError,
    InvalidArgumentError,
    Job,
    JobState,
    JobwireError,
    RetryConfig,
    StatusCode,
)
from jobwire.gateway import EmbeddedGateway, Gateway
from jobwire.gateway.testing import running_gateway, settings_for_tests
from jobwire.v1 import queue_service_pb2_grpc
from jobwire.worker import HandlerRegistry, JobContext, Worker

from conftest import GatewayFactory
from support import RawWorker
from timing import SETTLE_WITHIN

THREADS = 16
PER_THREAD = 40


class Runs:
    """Counts the runs of each job a worker handles."""

    def __init__(self) -> None:
        self.by_id: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.registry = HandlerRegistry()
        self.registry.register("count", self._run)

    def _run(self, ctx: JobContext) -> None:
        with self._lock:
            self.by_id[ctx.job.id] += 1


@pytest.fixture
def runs(embedded_gateway: EmbeddedGateway) -> Iterator[Runs]:
    counted = Runs()
    worker = Worker(embedded_gateway.address, registry=counted.registry)
    worker.start()
    yield counted
    worker.stop(10)


async def test_each_caller_gets_its_job_and_a_rejected_one_only_its_own_error(
    client: AsyncClient,
) -> None:
    calls = [client.enqueue("t", n) for n in range(30)]
    calls.insert(17, client.enqueue("", "bad"))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    bad = outcomes.pop(17)
    assert all(isinstance(job, Job) for job in outcomes)
    assert [job.payload for job in outcomes] == list(range(30))  # type: ignore[union-attr]
    assert len({job.id for job in outcomes}) == 30  # type: ignore[union-attr]
    # The same error as the unary EnqueueJob of that job alone: it names its field.
    assert isinstance(bad, InvalidArgumentError)
    assert bad.metadata == {"field": "type"}
    [stats] = await client.stats()
    assert stats.pending == 30


def test_threads_get_their_own_outcomes_from_the_sync_client(sync_client: Client) -> None:
    outcomes: dict[int, Job | JobwireError] = {}

    def enqueue(n: int) -> None:
        try:
            outcomes[n] = sync_client.enqueue("" if n == 5 else "t", n)
        except JobwireError as error:
            outcomes[n] = error

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = outcomes.pop(5)
    assert isinstance(bad, InvalidArgumentError)
    assert bad.metadata == {"field": "type"}
    assert {job.payload for job in outcomes.values()} == set(range(THREADS)) - {5}  # type: ignore[union-attr]


def test_sixteen_threads_sharing_a_client_each_get_distinct_jobs_that_run_once(
    sync_client: Client, runs: Runs
) -> None:
    by_thread: dict[int, list[Job]] = {}

    def produce(thread: int) -> None:
        by_thread[thread] = [sync_client.enqueue("count", [thread, n]) for n in range(PER_THREAD)]

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = [job for thread in range(THREADS) for job in by_thread[thread]]
    assert len({job.id for job in jobs}) == THREADS * PER_THREAD
    assert [job.payload for job in by_thread[3]] == [[3, n] for n in range(PER_THREAD)]
    sync_client.wait_all(jobs, timeout=SETTLE_WITHIN)
    assert runs.by_id == Counter({job.id: 1 for job in jobs})


@pytest.mark.parametrize("cut", [False, True], ids=["drained", "cut"])
async def test_a_gateway_stopping_mid_flight_loses_and_duplicates_nothing(
    tmp_path: Any, cut: bool
) -> None:
    """Producers keep enqueueing while the gateway stops and a new one takes its port.

    Drained, the gateway answers the frames it read and ends the streams;
    cut, it drops them with frames in flight, whose answers are lost. The
    SQLite provider keeps jobs (and their request ids) across the restart:
    every job a caller got is stored, no job is stored twice, and a caller
    whose enqueue could not be mended gets a clear error, not a hang.
    """
    provider = {"type": "sqlite", "database_url": f"sqlite+aiosqlite:///{tmp_path}/queue.db"}
    retry = RetryConfig(max_attempts=5, initial_backoff=timedelta(milliseconds=500))
    first = Gateway(settings_for_tests(provider=provider))
    await first.start()
    address = first.address
    client = Client(address, retry=retry)
    stop = threading.Event()
    got: list[Job] = []
    errors: list[JobwireError] = []
    lock = threading.Lock()
    loop = asyncio.get_running_loop()
    # Set when the callers have got that many jobs.
    milestones = {50: asyncio.Event()}

    def produce(thread: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                job = client.enqueue("t", f"{thread}-{n}")
            except JobwireError as error:
                with lock:
                    errors.append(error)
            else:
                with lock:
                    got.append(job)
                    reached = milestones.get(len(got))
                if reached is not None:
                    loop.call_soon_threadsafe(reached.set)
            n += 1

    producers = [asyncio.ensure_future(asyncio.to_thread(produce, t)) for t in range(4)]
    try:
        await asyncio.wait_for(milestones[50].wait(), SETTLE_WITHIN)
        stopping = asyncio.ensure_future(first.stop(grace=SETTLE_WITHIN))
        if cut:
            first.stop_now()
        await stopping
        settings = settings_for_tests(server={"listen": address}, provider=provider)
        async with running_gateway(settings):
            with lock:
                resumed = milestones[len(got) + 50] = asyncio.Event()
            await asyncio.wait_for(resumed.wait(), SETTLE_WITHIN)  # the new gateway takes jobs
            stop.set()
            await asyncio.gather(*producers)
            async with AsyncClient(address) as reader:
                listed = await reader.jobs(limit=None)  # without payloads
                stored = await asyncio.gather(*(reader.get_job(job.id) for job in listed))
    finally:
        stop.set()
        await asyncio.gather(*producers, return_exceptions=True)
        await asyncio.to_thread(client.close)
    payloads = Counter(job.payload for job in stored)
    assert max(payloads.values()) == 1, "a job stored twice"
    assert {job.id for job in got} <= {job.id for job in stored}, "a job a caller got is lost"
    assert len({job.id for job in got}) == len(got)
    assert all(isinstance(error, GatewayUnavailableError) for error in errors), errors


async def test_a_gateway_without_the_stream_gets_unary_calls(gateway: Gateway) -> None:
    """An older gateway answers EnqueueStream UNIMPLEMENTED; a real JobService behind."""
    older = grpc.aio.server()
    older.add_generic_rpc_handlers((_without_stream(gateway),))
    port = older.add_insecure_port("127.0.0.1:0")
    await older.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}") as client:
            calls = [client.enqueue("t", n) for n in range(10)]
            calls.append(client.enqueue("", "bad"))
            *jobs, bad = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(bad, InvalidArgumentError)
            assert bad.metadata == {"field": "type"}
            assert len({job.id for job in jobs}) == 10  # type: ignore[union-attr]
            assert (await client.enqueue("t", "after")).state is JobState.PENDING
        with Client(f"127.0.0.1:{port}") as sync_client:
            job = await asyncio.to_thread(sync_client.enqueue, "t", "sync")
            assert job.payload == "sync"
    finally:
        await older.stop(None)


def _without_stream(gateway: Gateway) -> grpc.GenericRpcHandler:
    """The gateway's QueueService handlers, EnqueueStream left out."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    class Capture:
        def add_generic_rpc_handlers(self, generic: object) -> None:
            pass

        def add_registered_method_handlers(self, service: str, methods: dict[str, Any]) -> None:
            handlers.update(methods)

    capture: Any = Capture()  # records what a server would be given
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(gateway._queue, capture)
    del handlers["EnqueueStream"]
    return grpc.method_handlers_generic_handler("jobwire.v1.QueueService", handlers)


async def test_a_gateway_out_of_stream_slots_gets_unary_calls(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory(server={"max_streams": 1})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        worker = await RawWorker(channel, worker_id="holds-the-slot").open()
        async with AsyncClient(gateway.address) as client:
            jobs = await asyncio.gather(*(client.enqueue("t", n) for n in range(5)))
            assert len({job.id for job in jobs}) == 5
        worker.drop()


async def test_a_job_over_the_message_limit_fails_alone(gateway_factory: GatewayFactory) -> None:
    # The gateway's gRPC refuses a message over its limit by failing the whole
    # stream: the frames on it go again as unary calls, each job on its own.
    gateway = await gateway_factory(server={"max_message_bytes": 64 * 1024})
    async with AsyncClient(gateway.address) as client:
        calls = [client.enqueue("t", n) for n in range(5)]
        calls.append(client.enqueue("t", b"x" * 100_000))
        *jobs, big = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(big, JobwireError)
        assert big.code is StatusCode.RESOURCE_EXHAUSTED
        assert [job.payload for job in jobs] == list(range(5))  # type: ignore[union-attr]
        assert (await client.enqueue("t", "next")).payload == "next"
        [stats] = await client.stats()
        assert stats.pending == 6


async def test_the_sync_client_enqueues_inside_a_running_loop(
    embedded_gateway: EmbeddedGateway,
) -> None:
    # A notebook cell runs on the kernel's loop: the client's own loop thread
    # carries the stream, so blocking here does not need this loop.
    loop = asyncio.get_running_loop()
    with Client(embedded_gateway.address) as client:
        jobs = [client.enqueue("t", n) for n in range(5)]
    assert len({job.id for job in jobs}) == 5
    assert asyncio.get_running_loop() is loop
