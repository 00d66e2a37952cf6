"""``jobwire`` operator commands (retry, purge, pause, resume, workers, drain) on a gateway."""

from __future__ import annotations

import json
import time

import pytest

from jobwire.client import Client, JobState
from jobwire.client._cli import main
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, Worker

from timing import FRAME_TIMEOUT


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def run(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """Exit code, and stdout (stderr when it failed: errors go there)."""
    code = main(["--gateway", embedded_gateway.address, *args])
    captured = capsys.readouterr()
    return code, captured.out if code == 0 else captured.err


def test_retry_by_id_and_by_filter(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], sync_client: Client
) -> None:
    first = sync_client.enqueue("t")
    second = sync_client.enqueue("t")
    for job in (first, second):
        sync_client.cancel_job(job.id)
    code, out = run(embedded_gateway, capsys, "retry", first.id, "--payload", '{"n": 2}', "--json")
    assert code == 0
    document = json.loads(out)
    assert (document["id"], document["state"]) == (first.id, "pending")
    assert sync_client.get_job(first.id).payload == {"n": 2}
    code, out = run(embedded_gateway, capsys, "retry", "--state", "cancelled", "--json")
    assert (code, json.loads(out)) == (0, {"retried": 1})
    code, out = run(embedded_gateway, capsys, "retry", first.id)
    assert code == 1
    assert "only dead, failed and cancelled" in out
    code, out = run(embedded_gateway, capsys, "retry", first.id, "--queue", "q")
    assert code == 1
    assert "not both" in out


def test_retry_and_purge_by_ids(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], sync_client: Client
) -> None:
    jobs = [sync_client.enqueue("t", queue="mail") for _ in range(3)]
    for job in jobs:
        sync_client.cancel_job(job.id)
    code, out = run(
        embedded_gateway, capsys, "retry", "--id", jobs[0].id, "--id", jobs[1].id, "--json"
    )
    assert (code, json.loads(out)) == (0, {"retried": 2})
    assert sync_client.get_job(jobs[2].id).state is JobState.CANCELLED
    code, out = run(embedded_gateway, capsys, "retry", jobs[2].id, "--id", jobs[1].id)
    assert code == 1
    assert "not both" in out
    ids = ["--id", jobs[0].id, "--id", jobs[2].id]
    code, out = run(embedded_gateway, capsys, "purge", *ids, "--queue", "other", "--dry-run")
    assert (code, out.strip()) == (0, "would purge 0 jobs")
    code, out = run(embedded_gateway, capsys, "purge", *ids, "--yes")
    assert (code, out.strip()) == (0, "purged 2 jobs")
    assert [job.id for job in sync_client.jobs()] == [jobs[1].id]


def test_purge_previews_asks_and_needs_a_filter(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], sync_client: Client
) -> None:
    for _ in range(3):
        sync_client.enqueue("flood", queue="mail")
    code, out = run(embedded_gateway, capsys, "purge", "--queue", "mail", "--dry-run", "--json")
    assert (code, json.loads(out)) == (0, {"would_purge": 3})
    # No terminal to ask on (pytest's stdin): refused without --yes, nothing deleted.
    code, out = run(embedded_gateway, capsys, "purge", "--queue", "mail")
    assert code == 1
    assert "--yes" in out
    assert sync_client.stats("mail")[0].pending == 3
    code, out = run(embedded_gateway, capsys, "purge", "--queue", "mail", "--yes")
    assert (code, out.strip()) == (0, "purged 3 jobs")
    code, out = run(embedded_gateway, capsys, "purge", "--yes")
    assert code == 1
    assert "selector" in out


def test_pause_resume_workers_and_drain(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], sync_client: Client
) -> None:
    code, out = run(embedded_gateway, capsys, "pause", "mail", "--json")
    assert code == 0
    assert json.loads(out)["paused"] is True
    code, out = run(embedded_gateway, capsys, "resume", "mail")
    assert (code, out.strip()) == (0, "mail: flowing")
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    worker = Worker(
        embedded_gateway.address, registry=registry, worker_id="cli-w", shutdown_timeout=5
    )
    worker.start()
    try:
        deadline = time.monotonic() + FRAME_TIMEOUT
        while not sync_client.list_workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        code, out = run(embedded_gateway, capsys, "workers")
        assert code == 0
        assert "cli-w" in out
        assert "jobwire-worker-python" in out
        code, out = run(embedded_gateway, capsys, "workers", "--json")
        [listed] = json.loads(out)
        assert listed["worker_id"] == "cli-w"
        code, out = run(embedded_gateway, capsys, "drain", "cli-w", "--json")
        assert (code, json.loads(out)) == (0, {"worker_id": "cli-w", "drained": 1})
    finally:
        worker.stop(timeout=10)
    code, out = run(embedded_gateway, capsys, "drain", "nobody")
    assert code == 1
    assert "nobody" in out
    assert JobState.PENDING.value == "pending"
