"""The Prometheus endpoint (``[server] metrics_listen``), tested by scraping it."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from jobwire.gateway import Gateway
from jobwire.v1 import schedule_service_pb2 as S
from jobwire.v1 import schedule_service_pb2_grpc

from conftest import GatewayFactory
from support import Producer, RawWorker, State, seconds


async def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            text: str = reply.read().decode()
            return text

    samples = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(fetch)):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def job_labels(queue: str = "default", type: str = "t") -> frozenset[tuple[str, str]]:
    return frozenset({("queue", queue), ("type", type)})


async def test_metrics_are_off_by_default(gateway: Gateway) -> None:
    assert gateway.metrics_address == ""


async def test_job_transitions_and_workers_are_counted(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(
        server={"metrics_listen": "127.0.0.1:0", "lease_duration": 1, "min_lease_duration": 1},
        provider={"retry": {"initial_backoff": 0, "jitter": 0}},
    )
    host, _, port = gateway.metrics_address.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        producer = Producer(channel)
        done = await producer.enqueue("email")
        retried = await producer.enqueue("email", max_retries=1)
        dead = await producer.enqueue("report")
        worker = await RawWorker(channel, max_in_flight=3).open()
        items = {i.job.id: i for i in await worker.jobs(3)}
        samples = await scrape(gateway.metrics_address)
        none: frozenset[tuple[str, str]] = frozenset()
        assert samples["jobwire_workers_connected", none] == 1
        assert samples["jobwire_worker_credits", none] == 3
        assert samples["jobwire_jobs_in_flight", none] == 3
        assert samples["jobwire_jobs_enqueued_total", job_labels(type="email")] == 2
        assert samples["jobwire_job_queue_wait_seconds_count", job_labels(type="email")] == 2
        depth = frozenset({("queue", "default"), ("state", "processing")})
        assert samples["jobwire_queue_jobs", depth] == 3

        await worker.ack(items[done.id].lease_id)
        await worker.result()
        await worker.nack(items[retried.id].lease_id)  # attempt 1 of 2: retried
        await worker.result()
        await worker.nack(items[dead.id].lease_id, retryable=False)
        await worker.result()
        [again] = await worker.jobs(1)
        assert again.attempt == 2
        await producer.wait_state(dead.id, State.STATE_DEAD)

        samples = await scrape(gateway.metrics_address)
        email, report = job_labels(type="email"), job_labels(type="report")
        assert samples["jobwire_jobs_completed_total", email] == 1
        assert samples["jobwire_jobs_failed_total", email] == 1
        assert ("jobwire_jobs_dead_total", email) not in samples
        assert samples["jobwire_jobs_failed_total", report] == 1
        assert samples["jobwire_jobs_dead_total", report] == 1
        assert samples["jobwire_job_redeliveries_total", email] == 1
        assert samples["jobwire_job_handler_duration_seconds_count", email] == 2
        assert samples["jobwire_jobs_in_flight", none] == 1

        # The redelivered lease runs out (1 s): counted as an expiry, no longer in flight.
        await worker.expect("lease_revoked", timeout=5)
        samples = await scrape(gateway.metrics_address)
        assert samples["jobwire_lease_expiries_total", none] == 1
        assert samples["jobwire_jobs_in_flight", none] == 0
        await worker.close()
    samples = await scrape(gateway.metrics_address)
    assert samples["jobwire_workers_connected", frozenset()] == 0
    assert samples["jobwire_worker_credits", frozenset()] == 0


async def test_scheduler_fires_and_lateness_are_counted(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(
        server={"metrics_listen": "127.0.0.1:0"}, scheduler={"poll_interval": 0.1}
    )
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        tick = S.Schedule(name="tick", job_template=S.JobTemplate(type="tick"), interval=seconds(1))
        await schedule_service_pb2_grpc.ScheduleServiceStub(channel).CreateSchedule(
            S.CreateScheduleRequest(schedule=tick)
        )
        labels = job_labels(type="tick")
        for _ in range(50):  # the first occurrence is due within 1 s
            samples = await scrape(gateway.metrics_address)
            if samples.get(("jobwire_scheduler_fires_total", labels)):
                break
            await asyncio.sleep(0.1)
        assert samples["jobwire_scheduler_fires_total", labels] >= 1
        assert samples["jobwire_scheduler_lateness_seconds_count", labels] >= 1
