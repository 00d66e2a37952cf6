"""The dashboard in a real browser (Debian's Chromium through Playwright).

Each test waits on selectors and events, never on fixed sleeps. The page tour
takes a screenshot of every page; with ``JOBWIRE_SCREENSHOTS=docs/screenshots``
it writes them there, for the README (``hatch run test:screenshots``), and
otherwise into the test's temporary directory, so a test run changes no file
of the repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from jobwire.client import JobState
from jobwire.dashboard._charts import HEIGHT, PAD

from dashboard_support import XSS, ConsoleErrors, Seeded, Served, served_dashboard, wait_state
from timing import QUIET

SCREENSHOTS = os.environ.get("JOBWIRE_SCREENSHOTS")
"""Where the page tour writes its screenshots; unset: the test's temporary directory."""
# The y of a zero on the overview's charts (SVG units).
BASELINE = HEIGHT - PAD


def pages(seeded: Seeded) -> dict[str, str]:
    return {
        "overview": "/",
        "jobs": "/jobs",
        "job": f"/jobs/{seeded.ids[JobState.PROCESSING]}",
        "dead": "/dead",
        "schedules": "/schedules",
        "workers": "/workers",
    }


@pytest.mark.parametrize("name", ["overview", "jobs", "job", "dead", "schedules", "workers"])
def test_each_page_loads_without_console_errors(
    page: Page, console: ConsoleErrors, served: Served, seeded: Seeded, name: str, tmp_path: Path
) -> None:
    response = page.goto(served.url + pages(seeded)[name])
    assert response is not None
    assert response.status == 200
    expect(page.locator("h1")).to_be_visible()
    if name == "overview":
        # Some traffic once the dashboard samples, so the chart has a line to show.
        for n in range(8):
            seeded.client.enqueue("email:send", {"to": f"reader-{n}"})
        page.wait_for_function(
            "document.querySelector('polyline.series-completed').getAttribute('points')"
            f".split(' ').some(p => parseFloat(p.split(',')[1]) < {BASELINE})"
        )
    if name in ("overview", "job"):
        # The live pages render their first event before the picture is taken.
        page.wait_for_selector("body[data-live='1']")
        page.wait_for_function("document.querySelector('[data-live] *') !== null")
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png", full_page=True)
    assert (folder / f"{name}.png").stat().st_size > 0
    assert console == []


def test_filters_narrow_the_table(page: Page, served: Served, seeded: Seeded) -> None:
    page.goto(served.url + "/jobs")
    rows = page.locator("tr[data-job]")
    everything = rows.count()
    page.select_option("select[name=state]", "dead")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/jobs?*state=dead*")
    expect(rows).to_have_count(len(seeded.dead_ids))
    assert everything > len(seeded.dead_ids)
    page.fill("input[name=q]", "1x0")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(1)


def test_a_script_payload_renders_as_text(page: Page, served: Served, seeded: Seeded) -> None:
    page.goto(served.url + f"/jobs/{seeded.xss_id}")
    expect(page.locator("#payload")).to_contain_text(XSS)
    expect(page.locator(".attributes td")).to_have_text(XSS)
    assert page.evaluate("window.__xss") is None


def test_a_post_without_the_csrf_token_is_refused(
    page: Page, served: Served, seeded: Seeded
) -> None:
    job = seeded.client.enqueue("report:build", {}, queue="browser-csrf", delay=3600)
    page.goto(served.url + f"/jobs/{job.id}")
    answer = page.request.post(served.url + f"/jobs/{job.id}/cancel", form={"reason": "x"})
    assert answer.status == 403
    assert seeded.client.get_job(job.id).state is JobState.SCHEDULED
    # The page's own form, with its token, does cancel it.
    page.click("form[action$='/cancel'] button")
    expect(page.locator("[data-job-state=cancelled]")).to_be_visible()


def test_beyond_loopback_a_login_comes_first(browser: Browser, seeded: Seeded) -> None:
    with served_dashboard(seeded.address, login_required=True, password="s3cret") as served:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(served.url + "/dead")
            page.wait_for_url("**/login?next=%2Fdead")
            page.fill("input[name=password]", "wrong")
            page.click("#login button")
            expect(page.locator(".problem")).to_have_text("Wrong password.")
            page.fill("input[name=password]", "s3cret")
            page.click("#login button")
            page.wait_for_url("**/dead")
            expect(page.locator("h1")).to_have_text("Dead jobs")
        finally:
            context.close()


def test_a_job_finishing_is_seen_live(page: Page, served: Served, seeded: Seeded) -> None:
    job = seeded.client.enqueue("gated:run", {"key": "live"})
    wait_state(seeded.client, job.id, JobState.PROCESSING)
    page.goto(served.url + f"/jobs/{job.id}")
    expect(page.locator("[data-job-state=processing]")).to_be_visible()
    page.evaluate("window.__same_page = true")
    seeded.gates.gate("live").set()
    expect(page.locator("[data-job-state=completed]")).to_be_visible()
    expect(page.locator("#result")).to_have_text('"done"')
    assert page.evaluate("window.__same_page") is True


def test_the_overview_shows_a_new_queue_live(page: Page, served: Served, seeded: Seeded) -> None:
    page.goto(served.url + "/")
    page.wait_for_selector("body[data-live='1']")
    page.evaluate("window.__same_page = true")
    seeded.client.enqueue("report:build", {}, queue="appears-live")
    expect(page.locator("tr[data-queue=appears-live]")).to_be_visible()
    assert page.evaluate("window.__same_page") is True


def test_replaying_a_dead_job_from_its_page_completes_it_live(
    page: Page, served: Served, seeded: Seeded
) -> None:
    job = seeded.client.enqueue("fixable:run", {"key": "replay-live"})
    wait_state(seeded.client, job.id, JobState.DEAD)
    page.goto(served.url + f"/jobs/{job.id}")
    expect(page.locator("[data-job-state=dead]")).to_be_visible()
    seeded.gates.fixed.add("replay-live")  # the bug is fixed; the job waits on its gate
    page.click("form[action$='/retry'] button")
    expect(page.locator("[data-job-state=processing]")).to_be_visible()
    page.evaluate("window.__same_page = true")
    seeded.gates.gate("replay-live").set()
    expect(page.locator("[data-job-state=completed]")).to_be_visible()
    expect(page.locator("#result")).to_have_text('"fixed"')
    expect(page.locator(".timeline")).to_contain_text("bug replay-live")
    assert page.evaluate("window.__same_page") is True


def test_pausing_a_queue_from_the_ui_stops_deliveries(
    page: Page, served: Served, seeded: Seeded
) -> None:
    # A job makes the queue exist, so the overview has its row.
    seeded.client.enqueue("email:send", {"to": "warm-up"}, queue="pausable")
    page.goto(served.url + "/")
    row = page.locator("tr[data-queue=pausable]")
    row.locator("form[action$='/pause'] button").click()  # the confirmation is accepted
    expect(row.locator(".paused")).to_have_text("paused")
    job = seeded.client.enqueue("email:send", {"to": "held"}, queue="pausable")
    time.sleep(QUIET)  # watching for a delivery that must not happen
    assert seeded.client.get_job(job.id).state is JobState.PENDING
    row.locator("form[action$='/resume'] button").click()
    expect(row.locator(".paused")).to_have_text("")
    wait_state(seeded.client, job.id, JobState.COMPLETED)


def test_retrying_two_selected_dead_jobs_replays_exactly_those(
    page: Page, served: Served, seeded: Seeded
) -> None:
    jobs = [seeded.client.enqueue("fixable:run", {"key": "bulk-browser", "n": n}) for n in range(4)]
    dead = [wait_state(seeded.client, job.id, JobState.DEAD).id for job in jobs]
    seeded.gates.fixed.add("bulk-browser")
    seeded.gates.gate("bulk-browser").set()  # a replayed job completes at once
    page.goto(served.url + "/jobs?q=bug+bulk-browser")
    rows = page.locator("tr[data-job]")
    expect(rows).to_have_count(4)
    boxes = page.locator("input[name=ids]")
    page.check("input[data-select-all]")
    for n in range(4):
        expect(boxes.nth(n)).to_be_checked()
    page.uncheck("input[data-select-all]")
    chosen = [dead[0], dead[2]]
    for job_id in chosen:
        page.check(f"tr[data-job='{job_id}'] input[name=ids]")
    page.click("#bulk button[value=retry]")
    expect(page.locator("h1")).to_have_text("Retry 2 jobs?")
    expect(page.locator("ul.ids li")).to_have_count(2)
    page.click("#confirm button")
    page.wait_for_url("**/jobs?q=bug+bulk-browser")
    expect(page.locator(".flash")).to_have_text("Retried 2 of 2 jobs.")
    for job_id in chosen:
        wait_state(seeded.client, job_id, JobState.COMPLETED)
    page.reload()
    for job_id in dead:
        state = "completed" if job_id in chosen else "dead"
        expect(page.locator(f"tr[data-job='{job_id}'] .state")).to_have_text(state)
    assert [seeded.client.get_job(job_id).state for job_id in dead] == [
        JobState.COMPLETED,
        JobState.DEAD,
        JobState.COMPLETED,
        JobState.DEAD,
    ]
    # The module's other tests count the seeded dead jobs.
    assert seeded.client.purge_jobs(ids=[dead[1], dead[3]]) == 2
