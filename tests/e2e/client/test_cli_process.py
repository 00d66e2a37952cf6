"""The ``jobwire`` command as an OS process, against a gateway and a worker process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import commands

APP = "tests.e2e.worker.app:registry"
JOBWIRE = str(Path(sys.executable).parent / "jobwire")


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway process and a worker process running ``tests/e2e/worker/app.py``."""
    home = tmp_path_factory.mktemp("cli")
    with commands.gateway(cwd=home) as (_, address):
        worker = ("jobwire.worker", APP, "--gateway", address, "--log-level", "INFO")
        with commands.started(*worker, cwd=commands.ROOT) as process:
            process.wait_for("connected")
            yield address


def jobwire(address: str, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBWIRE, "--gateway", address, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=commands.clean_env(COLUMNS=str(columns)),
    )


def document(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_version() -> None:
    result = subprocess.run([JOBWIRE, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "jobwire 0.1.0"


def test_enqueue_options_and_wait_for_the_result(address: str) -> None:
    job = document(
        jobwire(
            address,
            "enqueue",
            "e2e:echo",
            '{"n": 1}',
            "--max-retries",
            "0",
            "--timeout",
            "30",
            "--dedup-key",
            "echo-1",
            "--wait",
            "--json",
        )
    )
    assert isinstance(job, dict)
    assert (job["state"], job["result"], job["payload"]) == ("completed", {"n": 1}, {"n": 1})
    assert (job["max_retries"], job["timeout"], job["deduplication_key"]) == (0, 30.0, "echo-1")


def test_wait_exits_non_zero_when_the_job_dies(address: str) -> None:
    result = jobwire(address, "enqueue", "e2e:fail", '"the impossible"', "--wait")
    assert result.returncode == 1
    assert "dead" in result.stdout
    assert "cannot do 'the impossible'" in result.stdout


def test_enqueue_at_a_time(address: str) -> None:
    job = document(
        jobwire(address, "enqueue", "e2e:echo", "--at", "2030-01-01T09:00:00+01:00", "--json")
    )
    assert isinstance(job, dict)
    assert job["state"] == "scheduled"
    assert job["schedule_time"] == "2030-01-01T08:00:00+00:00"
    naive = jobwire(address, "enqueue", "e2e:echo", "--at", "2030-01-01T09:00:00")
    assert naive.returncode == 2
    assert "ISO 8601 time with its offset" in naive.stderr


def test_a_malformed_payload_says_it_is_the_payload(address: str) -> None:
    result = jobwire(address, "enqueue", "e2e:echo", "{to: ada}")
    assert result.returncode == 2
    assert "argument payload: the payload is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_ids_are_never_cut_and_a_prefix_names_a_job(address: str) -> None:
    ids = [
        json.loads(jobwire(address, "enqueue", "e2e:echo", "--delay", "3600", "--json").stdout)[
            "id"
        ]
        for _ in range(3)
    ]
    for columns in (80, 60):
        listing = jobwire(address, "jobs", "--state", "scheduled", columns=columns)
        assert listing.returncode == 0, listing.stderr
        for job_id in ids:
            assert job_id in listing.stdout, listing.stdout
    shown = jobwire(address, "job", ids[0][:8], columns=80)
    assert shown.returncode == 0, shown.stderr
    for text in (ids[0], "queue", "default", "e2e:echo", "scheduled", "0/4", "payload"):
        assert text in shown.stdout
    cancelled = document(jobwire(address, "cancel", ids[1][:9], "--json"))
    assert isinstance(cancelled, dict)
    assert (cancelled["id"], cancelled["state"]) == (ids[1], "cancelled")


def test_every_read_command_takes_json(address: str) -> None:
    jobwire(address, "schedules", "register", "nightly", "e2e:echo", "0 3 * * *")
    stats = document(jobwire(address, "stats", "--json"))
    assert isinstance(stats, list)
    assert stats[0]["queue"] == "default"
    jobs = document(jobwire(address, "jobs", "--json", "--limit", "2"))
    assert isinstance(jobs, list)
    assert {"id", "state", "payload", "attributes"} <= set(jobs[0])
    job = document(jobwire(address, "job", jobs[0]["id"], "--json"))
    assert isinstance(job, dict)
    assert job["id"] == jobs[0]["id"]
    schedules = document(jobwire(address, "schedules", "list", "--json"))
    assert isinstance(schedules, list)
    assert schedules[0]["name"] == "nightly"
    schedule = document(jobwire(address, "schedules", "show", "nightly", "--json"))
    assert isinstance(schedule, dict)
    assert schedule["cron"] == "0 3 * * *"


def test_stats_names_the_types_no_worker_takes(address: str) -> None:
    jobwire(address, "enqueue", "nobody:takes", "--queue", "orphans")
    stats = document(jobwire(address, "stats", "orphans", "--json"))
    assert isinstance(stats, list)
    assert stats[0]["unserved_types"] == ["nobody:takes"]
    for columns in (80, 200):
        shown = jobwire(address, "stats", "orphans", columns=columns)
        assert "no worker for" in shown.stdout
        assert "nobody:takes" in shown.stdout
