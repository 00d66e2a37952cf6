"""Each page against a seeded gateway: what it shows, what it refuses, what it does."""

from __future__ import annotations

import html

from starlette.testclient import TestClient

from jobwire.client import JobState

from dashboard_support import XSS, DashboardFactory, Seeded, csrf_of, wait_state


def test_overview_lists_every_queue_with_its_counts(dashboard: TestClient) -> None:
    page = dashboard.get("/")
    assert page.status_code == 200
    assert 'data-queue="reports"' in page.text
    assert 'data-queue="default"' in page.text
    assert "<svg" in page.text
    assert "Jobs per minute" in page.text
    assert "Queue depth" in page.text


def test_every_page_is_one_click_from_the_overview(dashboard: TestClient) -> None:
    page = dashboard.get("/").text
    for path in ("/jobs", "/dead", "/schedules", "/workers"):
        assert f'href="{path}"' in page
        assert dashboard.get(path).status_code == 200


def test_jobs_filter_by_state_narrows_the_table(dashboard: TestClient, seeded: Seeded) -> None:
    everything = dashboard.get("/jobs").text
    dead = dashboard.get("/jobs", params={"state": "dead"}).text
    assert f'data-job="{seeded.ids[JobState.COMPLETED]}"' in everything
    assert f'data-job="{seeded.ids[JobState.COMPLETED]}"' not in dead
    assert all(f'data-job="{job_id}"' in dead for job_id in seeded.dead_ids)


def test_jobs_filter_by_queue_type_and_text(dashboard: TestClient, seeded: Seeded) -> None:
    reports = dashboard.get("/jobs", params={"queue": "reports"}).text
    assert f'data-job="{seeded.ids[JobState.PENDING]}"' in reports
    assert f'data-job="{seeded.ids[JobState.COMPLETED]}"' not in reports
    by_type = dashboard.get("/jobs", params={"type": "image:resize"}).text
    assert by_type.count('data-job="') == len(seeded.dead_ids)
    by_error = dashboard.get("/jobs", params={"q": "1x0"}).text
    assert by_error.count('data-job="') == 1
    by_id = dashboard.get("/jobs", params={"q": seeded.xss_id[:12]}).text
    assert f'data-job="{seeded.xss_id}"' in by_id


def test_jobs_sort_oldest_first_reverses_the_order(dashboard: TestClient) -> None:
    newest = dashboard.get("/jobs").text
    oldest = dashboard.get("/jobs", params={"sort": "oldest"}).text

    def order(text: str) -> list[str]:
        return [part.split('"', 1)[0] for part in text.split('data-job="')[1:]]

    assert order(oldest) == list(reversed(order(newest)))


def test_a_bad_filter_is_a_clear_400(dashboard: TestClient) -> None:
    page = dashboard.get("/jobs", params={"state": "exploded"})
    assert page.status_code == 400
    assert "unknown state &#39;exploded&#39;; accepted: pending" in page.text


def test_a_script_payload_renders_as_text(dashboard: TestClient, seeded: Seeded) -> None:
    page = dashboard.get(f"/jobs/{seeded.xss_id}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert html.escape(XSS) in page.text


def test_job_detail_shows_payload_result_and_error(dashboard: TestClient, seeded: Seeded) -> None:
    done = dashboard.get(f"/jobs/{seeded.ids[JobState.COMPLETED]}").text
    assert 'data-job-state="completed"' in done
    assert "&#34;sent_to&#34;: &#34;ada@example.com&#34;" in done
    dead = dashboard.get(f"/jobs/{seeded.dead_ids[0]}").text
    assert "image too large: 9000x9000" in dead
    assert "(not retryable)" in dead
    assert "<dt>Priority</dt><dd>5</dd>" in dead


def test_an_unknown_job_is_a_404_page(dashboard: TestClient) -> None:
    page = dashboard.get("/jobs/no-such-job")
    assert page.status_code == 404
    assert "NOT_FOUND" in page.text


def test_dead_jobs_are_grouped_by_type_and_error(dashboard: TestClient) -> None:
    page = dashboard.get("/dead").text
    assert "image too large: 9000x9000" in page
    assert "image too large: 1x0" in page
    big = page.split("image too large: 9000x9000", 1)[1].split("</tr>", 1)[0]
    assert ">3</a>" in big


def test_schedules_show_time_zone_and_next_five_runs(dashboard: TestClient) -> None:
    page = dashboard.get("/schedules").text
    row = page.split('data-schedule="nightly-report"', 1)[1].split("</tr>", 1)[0]
    assert "Europe/Paris" in row
    occurrences = row.split('class="occurrences"', 1)[1].split("</ol>", 1)[0]
    assert occurrences.count("<li>") == 5
    assert occurrences.count("04:30 CE") == 5  # CET or CEST: 04:30 in Paris, every day


def test_schedule_pause_resume_and_trigger(dashboard: TestClient, seeded: Seeded) -> None:
    token = csrf_of(dashboard.get("/schedules").text)
    paused = dashboard.post("/schedules/heartbeat/pause", data={"csrf_token": token})
    assert paused.status_code == 303
    assert seeded.client.get_schedule("heartbeat").paused
    dashboard.post("/schedules/heartbeat/resume", data={"csrf_token": token})
    assert not seeded.client.get_schedule("heartbeat").paused
    triggered = dashboard.post("/schedules/heartbeat/trigger", data={"csrf_token": token})
    assert triggered.status_code == 303
    assert "triggered: job" in dashboard.get("/schedules").text


def test_a_post_without_the_csrf_token_is_refused(dashboard: TestClient, seeded: Seeded) -> None:
    job = seeded.client.enqueue("report:build", {}, queue="csrf", delay=3600)
    dashboard.get("/")  # a session exists, with its token
    for data in ({}, {"csrf_token": "forged"}):
        refused = dashboard.post(f"/jobs/{job.id}/cancel", data=data)
        assert refused.status_code == 403
        assert "CSRF token" in refused.text
    assert seeded.client.get_job(job.id).state is JobState.SCHEDULED


def test_cancel_from_the_job_page(dashboard: TestClient, seeded: Seeded) -> None:
    job = seeded.client.enqueue("report:build", {}, queue="cancel", delay=3600)
    token = csrf_of(dashboard.get(f"/jobs/{job.id}").text)
    answer = dashboard.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token})
    assert answer.status_code == 303
    assert seeded.client.get_job(job.id).state is JobState.CANCELLED


def test_bulk_cancel_asks_for_a_confirmation_first(dashboard: TestClient, seeded: Seeded) -> None:
    jobs = [seeded.client.enqueue("report:build", {"n": n}, queue="bulk") for n in range(3)]
    token = csrf_of(dashboard.get("/jobs", params={"queue": "bulk"}).text)
    form = {"csrf_token": token, "action": "cancel", "ids": [job.id for job in jobs[:2]]}
    asked = dashboard.post("/jobs/bulk", data=form)
    assert asked.status_code == 200
    assert "Cancel 2 jobs?" in asked.text
    assert all(seeded.client.get_job(job.id).state is JobState.PENDING for job in jobs)
    done = dashboard.post("/jobs/bulk", data={**form, "confirmed": "yes"})
    assert done.status_code == 303
    states = [seeded.client.get_job(job.id).state for job in jobs]
    assert states == [JobState.CANCELLED, JobState.CANCELLED, JobState.PENDING]


def test_enqueue_a_copy_with_an_edited_payload(dashboard: TestClient, seeded: Seeded) -> None:
    original = seeded.dead_ids[-1]
    token = csrf_of(dashboard.get(f"/jobs/{original}").text)
    edited = '{"size": "10x10", "fixed": true}'
    answer = dashboard.post(f"/jobs/{original}/copy", data={"csrf_token": token, "payload": edited})
    assert answer.status_code == 303
    copy_id = answer.headers["location"].rsplit("/", 1)[1]
    assert copy_id != original
    copy = wait_state(seeded.client, copy_id, JobState.COMPLETED)
    assert copy.payload == {"size": "10x10", "fixed": True}
    assert copy.type == "image:resize"


def test_a_copy_with_a_payload_that_is_not_json_is_refused(
    dashboard: TestClient, seeded: Seeded
) -> None:
    original = seeded.ids[JobState.COMPLETED]
    token = csrf_of(dashboard.get(f"/jobs/{original}").text)
    answer = dashboard.post(
        f"/jobs/{original}/copy", data={"csrf_token": token, "payload": "{nope"}
    )
    assert answer.status_code == 400
    assert "the payload is not JSON" in answer.text


def test_read_only_hides_every_action_and_refuses_posts(
    dashboard_factory: DashboardFactory, seeded: Seeded
) -> None:
    dashboard = dashboard_factory(read_only=True)
    for path in ("/", "/jobs", f"/jobs/{seeded.ids[JobState.PENDING]}", "/dead", "/schedules"):
        page = dashboard.get(path).text
        assert 'method="post"' not in page, path
    job = seeded.client.enqueue("report:build", {}, queue="readonly", delay=3600)
    refused = dashboard.post(f"/jobs/{job.id}/cancel", data={})
    assert refused.status_code == 403
    assert "read-only" in refused.text
    assert seeded.client.get_job(job.id).state is JobState.SCHEDULED


def test_beyond_loopback_every_page_needs_a_login(dashboard_factory: DashboardFactory) -> None:
    dashboard = dashboard_factory(listen="0.0.0.0:8080", password="s3cret")
    page = dashboard.get("/jobs")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fjobs"
    assert dashboard.post("/jobs/bulk", data={}).status_code == 401
    login = dashboard.get("/login")
    token = csrf_of(login.text)
    wrong = dashboard.post(
        "/login", data={"csrf_token": token, "password": "guess", "next": "/jobs"}
    )
    assert wrong.status_code == 401
    assert "Wrong password" in wrong.text
    right = dashboard.post(
        "/login", data={"csrf_token": token, "password": "s3cret", "next": "/jobs"}
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/jobs"
    assert dashboard.get("/jobs").status_code == 200


def test_job_events_stream_the_job_until_it_ends(dashboard: TestClient, seeded: Seeded) -> None:
    with dashboard.stream("GET", f"/jobs/{seeded.ids[JobState.COMPLETED]}/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        text = "".join(events.iter_text())
    assert "event: job\n" in text
    assert 'data-job-state="completed"' in text
    assert text.endswith("event: end\ndata: \n\n")
