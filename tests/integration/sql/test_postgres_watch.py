"""Watching jobs through one PostgreSQL gateway while another enqueues and runs them."""

from __future__ import annotations

from integration.sql.conftest import SqlGateway
from integration.sqs.conftest import ClientFactory

from watching import follow_across_gateways


async def test_a_gateway_watches_jobs_another_gateway_enqueues_and_runs(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    # A reads back the watched jobs, and looks for new ones, every heartbeat.
    a = await connect(await postgres_gateway(heartbeat_interval=0.2))
    b = await connect(await postgres_gateway(heartbeat_interval=0.2))
    worker = await b.worker(worker_id="on-b", max_in_flight=8)
    await follow_across_gateways(a.producer, b.producer, worker)
