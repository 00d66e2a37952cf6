"""The job listing: filters, sorting, pages, and bulk actions with a confirmation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire.client import Job, JobState, JobwireError
from jobwire.dashboard._render import dashboard, flash
from jobwire.dashboard._security import ensure_writable, verified_form

PAGE_SIZE = 50
#: What the listing does with the selected jobs, and the buttons' labels.
BULK = {"retry": "Retry", "cancel": "Cancel", "purge": "Delete"}
#: What the confirmation says each action does.
NOTES = {
    "retry": "Dead, failed and cancelled jobs run again as a new series of attempts,"
    " their errors kept; the others are left as they are.",
    "cancel": "Pending and scheduled jobs are cancelled; running ones are stopped."
    " Finished jobs cannot be cancelled.",
    "purge": "Deletes the selected jobs, except running ones. Deleted jobs cannot be brought back.",
}


@dataclass(frozen=True)
class JobFilter:
    """The listing's query: what the gateway filters, then text, order and page here."""

    queue: str = ""
    type: str = ""
    state: str = ""
    text: str = ""
    oldest_first: bool = False
    page: int = 1

    @classmethod
    def of(cls, request: Request) -> JobFilter:
        """Reads the filter from the query string.

        Raises:
            HTTPException: 400 for an unknown state or a page that is not a number.
        """
        query = request.query_params
        state = query.get("state", "")
        if state and state not in JobState.__members__.values():
            accepted = ", ".join(JobState)
            raise HTTPException(400, f"unknown state {state!r}; accepted: {accepted}")
        page = query.get("page", "1")
        if not page.isdigit() or int(page) < 1:
            raise HTTPException(400, f"page must be a number from 1, got {page!r}")
        return cls(
            queue=query.get("queue", "").strip(),
            type=query.get("type", "").strip(),
            state=state,
            text=query.get("q", "").strip(),
            oldest_first=query.get("sort") == "oldest",
            page=int(page),
        )

    def matches(self, job: Job) -> bool:
        """Whether the text filter matches the job's id or its last error."""
        if not self.text:
            return True
        needle = self.text.lower()
        error = job.last_error.message.lower() if job.last_error else ""
        return needle in job.id.lower() or needle in error

    def url(self, **changes: str | int) -> str:
        """The listing's URL with this filter and `changes` (e.g. page=2)."""
        values: dict[str, str | int] = {
            "queue": self.queue,
            "type": self.type,
            "state": self.state,
            "q": self.text,
            "sort": "oldest" if self.oldest_first else "",
            "page": self.page,
            **changes,
        }
        kept = {key: value for key, value in values.items() if value not in ("", 1)}
        return "/jobs" + (f"?{urlencode(kept)}" if kept else "")


async def jobs_page(request: Request) -> Response:
    """GET /jobs: the filtered, sorted, paginated listing."""
    board = dashboard(request)
    selected = JobFilter.of(request)
    found = await board.client.jobs(
        queue=selected.queue or None,
        type=selected.type or None,
        state=JobState(selected.state) if selected.state else None,
        limit=board.settings.scan_limit,
    )
    matching = [job for job in found if selected.matches(job)]
    if selected.oldest_first:
        matching.reverse()
    pages = max(1, math.ceil(len(matching) / PAGE_SIZE))
    start = (selected.page - 1) * PAGE_SIZE
    return board.page(
        request,
        "jobs.html",
        jobs=matching[start : start + PAGE_SIZE],
        total=len(matching),
        truncated=len(found) >= board.settings.scan_limit,
        filter=selected,
        pages=pages,
        bulk=BULK,
    )


async def bulk_action(request: Request) -> Response:
    """POST /jobs/bulk: asks for a confirmation, then retries, cancels or deletes the selection."""
    board = dashboard(request)
    ensure_writable(board.settings)
    form = await verified_form(request)
    action = str(form.get("action", ""))
    if action not in BULK:
        raise HTTPException(400, f"unknown action {action!r}; accepted: {', '.join(BULK)}")
    ids = list(dict.fromkeys(str(value) for value in form.getlist("ids") if str(value)))
    back = local_jobs_url(str(form.get("back", "")))
    if not ids:
        flash(request, "Select at least one job first.")
        return RedirectResponse(back, status_code=303)
    label = BULK[action]
    if form.get("confirmed") != "yes":
        return board.page(
            request,
            "confirm.html",
            question=f"{label} {_jobs(len(ids))}?",
            note=NOTES[action],
            items=ids,
            target="/jobs/bulk",
            fields=[("action", action), ("back", back), *(("ids", i) for i in ids)],
            button=f"{label} {len(ids)}",
            back=back,
        )
    for message in await _apply(request, action, ids):
        flash(request, message)
    return RedirectResponse(back, status_code=303)


def local_jobs_url(url: str) -> str:
    """`url` when it is a listing of this dashboard, else the plain listing."""
    return url if url.startswith("/jobs") and not url.startswith("//") else "/jobs"


async def _apply(request: Request, action: str, ids: list[str]) -> list[str]:
    """Does `action` to the selected jobs; returns what to tell the operator."""
    client = dashboard(request).client
    if action == "retry":
        # One RetryJobs call: the gateway replays those it can (dead, failed, cancelled).
        done = await client.retry_jobs(ids=ids)
        return [_outcome("Retried", done, ids, "not dead, failed or cancelled")]
    if action == "purge":
        # One PurgeJobs call; running jobs are never deleted from here.
        done = await client.purge_jobs(ids=ids)
        return [_outcome("Deleted", done, ids, "running")]
    # No bulk cancel in the contract: one CancelJob each, which also revokes
    # a running job's lease and cancels the jobs the scheduler holds.
    done = 0
    failures: list[str] = []
    for job_id in ids:
        try:
            await client.cancel_job(job_id, reason="cancelled from the dashboard")
        except JobwireError as error:
            failures.append(f"{job_id}: {error}")
        else:
            done += 1
    return [f"Cancelled {done} of {_jobs(len(ids))}.", *failures[:5]]


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def _outcome(verb: str, done: int, ids: list[str], why: str) -> str:
    text = f"{verb} {done} of {_jobs(len(ids))}"
    if done == len(ids):
        return f"{text}."
    return f"{text} (the others are {why}, or no longer exist)."
