"""Job transitions are logged, one line each, with the job's fields; JSON on request."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobwire.client import Client, JobDeadError
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, NonRetryableError, Worker

FIELDS = ("job_id", "job_type", "queue", "attempt", "worker_id")


def test_each_transition_is_one_line_with_the_jobs_fields(
    embedded_gateway: EmbeddedGateway, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()

    @registry.handler("ok")
    def ok(ctx: JobContext) -> None:
        return None

    @registry.handler("bad")
    def bad(ctx: JobContext) -> None:
        raise NonRetryableError("no")

    caplog.set_level(logging.DEBUG, logger="jobwire")
    worker = Worker(embedded_gateway.address, registry=registry, worker_id="logger")
    worker.start()
    try:
        with Client(embedded_gateway.address) as client:
            good, failing = client.enqueue("ok"), client.enqueue("bad")
            good.wait(timeout=10)
            with pytest.raises(JobDeadError):
                failing.wait(timeout=10)
    finally:
        worker.stop()

    def lines(job_id: str) -> list[tuple[str, str, str]]:
        found = []
        for record in caplog.records:
            if getattr(record, "job_id", None) == job_id:
                assert all(hasattr(record, field) for field in FIELDS)
                found.append((record.name, record.levelname, record.getMessage().split()[-1]))
        return found

    assert lines(good.id) == [
        ("jobwire.gateway.jobs", "DEBUG", "enqueued"),
        ("jobwire.gateway.jobs", "DEBUG", "delivered"),
        ("jobwire.worker", "DEBUG", "started"),
        ("jobwire.worker", "DEBUG", "succeeded"),
        ("jobwire.gateway.jobs", "DEBUG", "completed"),
    ]
    assert lines(failing.id)[-2:] == [
        ("jobwire.worker", "WARNING", "NonRetryableError('no')"),
        ("jobwire.gateway.jobs", "WARNING", "dead"),
    ]


def test_gateway_json_logs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    command = [sys.executable, "-m", "jobwire.gateway", "--listen", "127.0.0.1:0"]
    # stderr to a file: at DEBUG the start alone logs more than a pipe holds,
    # and an unread pipe would block the gateway.
    log = tmp_path / "gateway.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*command, "--json-logs", "--log-level", "DEBUG"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=tmp_path,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            address = process.stdout.readline().split()[-1]
            with Client(address) as client:
                job = client.enqueue("json")
            process.terminate()
            process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    err = log.read_text()
    records = [json.loads(line) for line in err.splitlines()]
    [enqueued] = [r for r in records if r.get("job_id") == job.id]
    assert enqueued["logger"] == "jobwire.gateway.jobs"
    assert enqueued["level"] == "DEBUG"
    assert enqueued["job_type"] == "json"
    assert enqueued["queue"] == "default"
    assert enqueued["message"].endswith("enqueued")
