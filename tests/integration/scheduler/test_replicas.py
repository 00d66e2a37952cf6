"""Three gateway processes on one PostgreSQL database: every occurrence fires exactly once."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc

from jobwire.v1 import (
    job_pb2,
    queue_service_pb2,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
)

from postgres import psql
from support import Producer, eventually, seconds

S = schedule_service_pb2
RUN_SECONDS = 10


@contextmanager
def gateway_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    """``python -m jobwire.gateway`` with ``config``; stopped (killed if need be) on exit."""
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
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def address_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
    assert "listening on" in line, line
    return line.split()[-1]


async def all_jobs(channel: grpc.aio.Channel) -> list[job_pb2.Job]:
    producer = Producer(channel)
    jobs: list[job_pb2.Job] = []
    token = ""
    while True:
        request = queue_service_pb2.ListJobsRequest(page_size=1000, page_token=token)
        page = await producer.stub.ListJobs(request)
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token:
            return jobs


async def test_three_gateways_fire_each_occurrence_exactly_once(
    postgres_url: str, postgres_database: str, tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text(
        "[scheduler]\n"
        f'database_url = "{postgres_url}"\n'
        # Each gateway looks at the database at least every second, so all
        # three compete for every occurrence from the start.
        'poll_interval = "1s"\n'
        'delay_threshold = "0.5s"\n'
    )
    with ExitStack() as stack:
        processes = [stack.enter_context(gateway_process(config)) for _ in range(3)]
        addresses = await asyncio.gather(*(address_of(process) for process in processes))
        channels = [grpc.aio.insecure_channel(address) for address in addresses]
        try:
            stub = schedule_service_pb2_grpc.ScheduleServiceStub(channels[0])
            tick = S.Schedule(
                name="tick", job_template=S.JobTemplate(type="tick"), interval=seconds(1)
            )
            await stub.CreateSchedule(S.CreateScheduleRequest(schedule=tick))
            # One-time jobs too: held in the database, due together in 2 s.
            requests = [
                queue_service_pb2.EnqueueJobRequest(type="once", delay=seconds(2))
                for _ in range(100)
            ]
            enqueued = await Producer(channels[1]).stub.EnqueueJobs(
                queue_service_pb2.EnqueueJobsRequest(requests=requests)
            )
            held_ids = {result.job.id for result in enqueued.results}
            await asyncio.sleep(RUN_SECONDS)
            await stub.PauseSchedule(S.PauseScheduleRequest(name="tick"))
            # A hand-over in flight when the schedule paused is confirmed soon after.
            await eventually(
                lambda: (
                    psql(
                        "SELECT count(*) FROM schedule_fires WHERE status <> 'enqueued'",
                        postgres_database,
                    )
                    == "0"
                )
            )
            per_gateway = [await all_jobs(channel) for channel in channels]
        finally:
            for channel in channels:
                await channel.close()

    rows = psql(
        "SELECT job_id, status, extract(epoch FROM fire_time)::bigint FROM schedule_fires",
        postgres_database,
    ).splitlines()
    fires = [row.split("|") for row in rows]
    fire_ids = [job_id for job_id, _, _ in fires]
    fire_times = sorted(int(at) for _, _, at in fires)
    assert len(fires) >= RUN_SECONDS - 3, fires
    assert {status for _, status, _ in fires} == {"enqueued"}
    # Every occurrence in the run fired: consecutive seconds, none twice.
    assert [b - a for a, b in itertools.pairwise(fire_times)] == [1] * (len(fire_times) - 1)

    ticks = [job.id for jobs in per_gateway for job in jobs if job.schedule == "tick"]
    assert len(ticks) == len(set(ticks)), "an occurrence was enqueued twice"
    assert set(ticks) == set(fire_ids)
    onces = [job.id for jobs in per_gateway for job in jobs if job.type == "once"]
    assert len(onces) == len(set(onces)), "a one-time job was enqueued twice"
    assert set(onces) == held_ids
