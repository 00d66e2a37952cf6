"""The dashboard shows flow control: held jobs per queue, a key and why a job waits."""

from __future__ import annotations

import threading

from jobwire.client import JobState
from jobwire.worker import HandlerRegistry, JobContext, Worker

from dashboard_support import DashboardFactory, Seeded, wait_state, wait_until


def test_held_jobs_and_why_they_wait_are_shown(
    dashboard_factory: DashboardFactory, seeded: Seeded
) -> None:
    dashboard = dashboard_factory(poll_interval=0.1)
    client = seeded.client
    client.update_queue_config("flow-demo", max_concurrency_per_key=1)
    release = threading.Event()
    registry = HandlerRegistry()

    @registry.handler("hold")
    def hold(ctx: JobContext) -> None:
        release.wait(30)

    worker = Worker(
        seeded.address, registry=registry, queues=["flow-demo"], concurrency=2, max_in_flight=2
    )
    worker.start()
    try:
        first = client.enqueue("hold", queue="flow-demo", concurrency_key="customer-7")
        second = client.enqueue("hold", queue="flow-demo", concurrency_key="customer-7")
        wait_state(client, first.id, JobState.PROCESSING)
        page = dashboard.get(f"/jobs/{second.id}").text
        assert "customer-7" in page
        assert "concurrency key customer-7 (1 of 1 processing)" in page
        # The overview shows the queues as last sampled (every poll_interval).
        wait_until(lambda: "1 by key (1 busy)" in dashboard.get("/").text)
    finally:
        release.set()
        worker.stop(timeout=10)
        client.update_queue_config("flow-demo", max_concurrency_per_key=0)
