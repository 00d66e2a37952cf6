"""Operator actions from the dashboard, through the SDK's operations RPCs."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from jobwire.client import JobNotFoundError, JobState
from jobwire.worker import Worker

from dashboard_support import DashboardFactory, Seeded, csrf_of, registry, wait_state, wait_until


def dead_fixable(seeded: Seeded, key: str, count: int = 1) -> list[str]:
    jobs = [seeded.client.enqueue("fixable:run", {"key": key, "n": n}) for n in range(count)]
    for job in jobs:
        wait_state(seeded.client, job.id, JobState.DEAD)
    return [job.id for job in jobs]


def fix(seeded: Seeded, key: str) -> None:
    seeded.gates.fixed.add(key)
    seeded.gates.gate(key).set()


def test_retry_from_the_job_page_keeps_the_errors(dashboard: TestClient, seeded: Seeded) -> None:
    (job_id,) = dead_fixable(seeded, "page")
    page = dashboard.get(f"/jobs/{job_id}").text
    assert f'action="/jobs/{job_id}/retry"' in page
    fix(seeded, "page")
    answer = dashboard.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    job = wait_state(seeded.client, job_id, JobState.COMPLETED)
    assert [error.message for error in job.errors] == ["bug page"]
    done = dashboard.get(f"/jobs/{job_id}").text
    assert "bug page" in done
    assert f'action="/jobs/{job_id}/retry"' not in done


def test_retrying_a_completed_job_is_a_clear_409(dashboard: TestClient, seeded: Seeded) -> None:
    job_id = seeded.ids[JobState.COMPLETED]
    token = csrf_of(dashboard.get(f"/jobs/{job_id}").text)
    answer = dashboard.post(f"/jobs/{job_id}/retry", data={"csrf_token": token})
    assert answer.status_code == 409
    assert "FAILED_PRECONDITION" in answer.text


def test_bulk_retry_replays_the_selected_jobs_in_one_call(
    dashboard: TestClient, seeded: Seeded
) -> None:
    ids = dead_fixable(seeded, "bulk", 3)
    pending = seeded.ids[JobState.PENDING]
    fix(seeded, "bulk")
    page = dashboard.get("/jobs").text
    assert '<button type="submit" name="action" value="retry">Retry</button>' in page
    form = {"csrf_token": csrf_of(page), "action": "retry", "ids": [*ids[:2], pending]}
    asked = dashboard.post("/jobs/bulk", data=form)
    assert asked.status_code == 200
    assert "Retry 3 jobs?" in asked.text
    assert "the others are left as they are" in asked.text
    assert seeded.client.get_job(ids[0]).state is JobState.DEAD
    done = dashboard.post("/jobs/bulk", data={**form, "confirmed": "yes"})
    assert done.status_code == 303
    flashed = dashboard.get(done.headers["location"]).text
    assert "Retried 2 of 3 jobs (the others are not dead, failed or cancelled" in flashed
    for job_id in ids[:2]:
        wait_state(seeded.client, job_id, JobState.COMPLETED)
    assert seeded.client.get_job(ids[2]).state is JobState.DEAD
    assert seeded.client.get_job(pending).state is JobState.PENDING


def test_bulk_delete_deletes_the_selected_jobs_after_a_confirmation(
    dashboard: TestClient, seeded: Seeded
) -> None:
    now = [
        seeded.client.enqueue("report:build", {"n": n}, queue="bulk-delete").id for n in range(3)
    ]
    later = seeded.client.enqueue("report:build", {}, queue="bulk-delete", delay=3600).id
    page = dashboard.get("/jobs", params={"queue": "bulk-delete"}).text
    assert 'value="purge" class="danger">Delete</button>' in page
    back = "/jobs?queue=bulk-delete"
    form = {"csrf_token": csrf_of(page), "action": "purge", "ids": [now[0], later], "back": back}
    asked = dashboard.post("/jobs/bulk", data=form)
    assert "Delete 2 jobs?" in asked.text
    assert "cannot be brought back" in asked.text
    assert seeded.client.get_job(later).state is JobState.SCHEDULED
    done = dashboard.post("/jobs/bulk", data={**form, "confirmed": "yes"})
    assert (done.status_code, done.headers["location"]) == (303, back)
    assert "Deleted 2 of 2 jobs." in dashboard.get(back).text
    for job_id in (now[0], later):
        with pytest.raises(JobNotFoundError):
            seeded.client.get_job(job_id)
    assert [seeded.client.get_job(job_id).state for job_id in now[1:]] == [JobState.PENDING] * 2


def test_replay_a_dead_group_after_a_confirmation(dashboard: TestClient, seeded: Seeded) -> None:
    ids = dead_fixable(seeded, "group", 3)
    page = dashboard.get("/dead").text
    assert "bug group" in page
    form = {"csrf_token": csrf_of(page), "type": "fixable:run", "message": "bug group"}
    asked = dashboard.post("/dead/replay", data=form)
    assert asked.status_code == 200
    assert "every dead fixable:run job whose error contains “bug group”" in asked.text
    assert all(seeded.client.get_job(job_id).state is JobState.DEAD for job_id in ids)
    fix(seeded, "group")
    done = dashboard.post("/dead/replay", data={**form, "confirmed": "yes"})
    assert done.status_code == 303
    assert "Replayed 3 dead fixable:run jobs." in dashboard.get("/dead").text
    for job_id in ids:
        wait_state(seeded.client, job_id, JobState.COMPLETED)


def test_purge_what_the_filter_matches(dashboard: TestClient, seeded: Seeded) -> None:
    doomed = [seeded.client.enqueue("report:build", {}, queue="purge-me").id for _ in range(3)]
    kept = seeded.client.enqueue("report:build", {}, queue="keep-me").id
    page = dashboard.get("/jobs", params={"queue": "purge-me"}).text
    form = {"csrf_token": csrf_of(page), "queue": "purge-me", "type": "", "state": "", "q": ""}
    asked = dashboard.post("/jobs/purge", data=form)
    assert "Delete 3 jobs?" in asked.text
    assert seeded.client.get_job(doomed[0]).state is JobState.PENDING
    done = dashboard.post("/jobs/purge", data={**form, "confirmed": "yes"})
    assert done.status_code == 303
    assert done.headers["location"] == "/jobs?queue=purge-me"
    for job_id in doomed:
        with pytest.raises(JobNotFoundError):
            seeded.client.get_job(job_id)
    assert seeded.client.get_job(kept).state is JobState.PENDING


def test_purge_without_a_filter_is_refused(dashboard: TestClient) -> None:
    token = csrf_of(dashboard.get("/jobs").text)
    assert 'id="purge"' not in dashboard.get("/jobs").text
    answer = dashboard.post("/jobs/purge", data={"csrf_token": token, "confirmed": "yes"})
    assert answer.status_code == 400
    assert "purge needs a filter" in answer.text


def test_pause_and_resume_a_queue(dashboard: TestClient, seeded: Seeded) -> None:
    seeded.client.enqueue("report:build", {}, queue="to-pause", delay=3600)
    token = csrf_of(dashboard.get("/").text)
    assert dashboard.post("/queues/to-pause/pause", data={"csrf_token": token}).status_code == 303
    assert seeded.client.stats("to-pause")[0].paused
    row = dashboard.get("/").text.split('data-queue="to-pause"', 1)[1].split("</tr>", 1)[0]
    assert ">paused<" in row
    assert 'action="/queues/to-pause/resume"' in row
    dashboard.post("/queues/to-pause/resume", data={"csrf_token": token})
    assert not seeded.client.stats("to-pause")[0].paused


def test_workers_are_listed_and_one_is_drained(dashboard: TestClient, seeded: Seeded) -> None:
    worker = Worker(
        seeded.address, registry=registry(seeded.gates), queues=["drain-me"], worker_id="w-drain"
    )
    worker.start()
    try:
        wait_until(lambda: 'data-worker="w-drain"' in dashboard.get("/workers").text)
        page = dashboard.get("/workers").text
        row = page.split('data-worker="w-drain"', 1)[1].split("</tr>", 1)[0]
        assert "jobwire-worker-python" in row
        assert "drain-me" in row
        seeded_worker = seeded.client.get_job(seeded.ids[JobState.COMPLETED]).worker_id
        assert f'data-worker="{seeded_worker}"' in page
        answer = dashboard.post("/workers/w-drain/drain", data={"csrf_token": csrf_of(page)})
        assert answer.status_code == 303
        wait_until(lambda: not worker.is_running)
        wait_until(lambda: 'data-worker="w-drain"' not in dashboard.get("/workers").text)
    finally:
        worker.stop(timeout=10)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/x/retry",
        "/jobs/bulk",
        "/dead/replay",
        "/jobs/purge",
        "/queues/default/pause",
        "/workers/w/drain",
    ],
)
def test_read_only_refuses_every_operation(
    dashboard_factory: DashboardFactory, seeded: Seeded, path: str
) -> None:
    dashboard = dashboard_factory(read_only=True)
    page = dashboard.get("/workers").text
    assert "Drain" not in page
    assert 'method="post"' not in page
    jobs = dashboard.get("/jobs").text
    assert 'type="checkbox"' not in jobs
    assert 'action="/jobs/bulk"' not in jobs
    form = {"confirmed": "yes", "type": "t", "queue": "q", "action": "purge", "ids": "x"}
    refused = dashboard.post(path, data=form)
    assert refused.status_code == 403
    assert "read-only" in refused.text
    assert not seeded.client.stats("default")[0].paused
