"""Operator actions through the SDK: retry a job, replay a dead group, purge, pause, drain.

Bulk ones (a dead group, a purge) answer first with a confirmation page that
says what will happen; the change is made by the POST from that page.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire.client import JobState
from jobwire.dashboard._jobs import JobFilter, local_jobs_url
from jobwire.dashboard._render import dashboard, flash
from jobwire.dashboard._security import ensure_writable, verified_form


async def _writable_form(request: Request) -> FormData:
    ensure_writable(dashboard(request).settings)
    return await verified_form(request)


async def retry(request: Request) -> Response:
    """POST /jobs/{id}/retry: the job is pending again, a new series of attempts."""
    await _writable_form(request)
    job = await dashboard(request).client.retry_job(request.path_params["job_id"])
    flash(request, f"Job {job.id} is {job.state} again.")
    return RedirectResponse(f"/jobs/{quote(job.id, safe='')}", status_code=303)


async def replay_group(request: Request) -> Response:
    """POST /dead/replay: replays every dead job of a type that died with a message."""
    board = dashboard(request)
    form = await _writable_form(request)
    job_type = str(form.get("type", ""))
    message = str(form.get("message", ""))
    if not job_type:
        raise HTTPException(400, "which group? the form names no job type")
    what = f"every dead {job_type} job " + (
        f"whose error contains “{message}”" if message else "that died without a message"
    )
    if form.get("confirmed") != "yes":
        return board.page(
            request,
            "confirm.html",
            question="Replay this group?",
            note=f"Replays {what}, on every queue: each is pending again, its errors kept.",
            target="/dead/replay",
            fields=[("type", job_type), ("message", message)],
            button="Replay",
            back="/dead",
        )
    client = board.client
    if message:
        # One server-side operation, however many jobs died this way.
        count = await client.retry_jobs(type=job_type, error_contains=message)
    else:
        # An empty text would match every error: replay the ones without a message.
        dead = await client.jobs(
            state=JobState.DEAD, type=job_type, limit=board.settings.scan_limit
        )
        count = 0
        for job in dead:
            if not (job.last_error and job.last_error.message):
                await client.retry_job(job.id)
                count += 1
    flash(request, f"Replayed {count} dead {job_type} job{'' if count == 1 else 's'}.")
    return RedirectResponse("/dead", status_code=303)


async def purge(request: Request) -> Response:
    """POST /jobs/purge: deletes every job the listing's filter matches, once confirmed."""
    board = dashboard(request)
    form = await _writable_form(request)
    selected = JobFilter(
        queue=str(form.get("queue", "")),
        type=str(form.get("type", "")),
        state=str(form.get("state", "")),
        text=str(form.get("q", "")),
    )
    if selected.state and selected.state not in JobState.__members__.values():
        raise HTTPException(400, f"unknown state {selected.state!r}")
    if not (selected.queue or selected.type or selected.state or selected.text):
        raise HTTPException(400, "purge needs a filter (queue, type, state or text) first")
    back = local_jobs_url(selected.url())

    async def purge_jobs(*, dry_run: bool) -> int:
        return await board.client.purge_jobs(
            queue=selected.queue or None,
            type=selected.type or None,
            states=[JobState(selected.state)] if selected.state else None,
            error_contains=selected.text or None,
            dry_run=dry_run,
        )

    if form.get("confirmed") != "yes":
        count = await purge_jobs(dry_run=True)
        return board.page(
            request,
            "confirm.html",
            question=f"Delete {count} job{'' if count == 1 else 's'}?",
            note=(
                "Deletes every job this filter matches now (the text matches the last "
                "error), except processing ones. Deleted jobs cannot be brought back."
            ),
            target="/jobs/purge",
            fields=[
                ("queue", selected.queue),
                ("type", selected.type),
                ("state", selected.state),
                ("q", selected.text),
            ],
            button=f"Delete {count}",
            back=back,
        )
    count = await purge_jobs(dry_run=False)
    flash(request, f"Deleted {count} job{'' if count == 1 else 's'}.")
    return RedirectResponse(back, status_code=303)


async def queue_action(request: Request) -> Response:
    """POST /queues/{queue}/{pause|resume}."""
    await _writable_form(request)
    queue: str = request.path_params["queue"]
    action: str = request.path_params["action"]
    client = dashboard(request).client
    if action == "pause":
        await client.pause_queue(queue)
        flash(request, f"Queue {queue} paused: workers get nothing from it until it is resumed.")
    elif action == "resume":
        await client.resume_queue(queue)
        flash(request, f"Queue {queue} resumed.")
    else:
        raise HTTPException(404, f"no action {action!r}; accepted: pause, resume")
    await dashboard(request).monitor.sample()
    return RedirectResponse("/", status_code=303)


async def drain(request: Request) -> Response:
    """POST /workers/{worker_id}/drain: the worker finishes its jobs and disconnects."""
    await _writable_form(request)
    worker_id: str = request.path_params["worker_id"]
    streams = await dashboard(request).client.drain_worker(worker_id)
    flash(request, f"Worker {worker_id}: {streams} stream{'' if streams == 1 else 's'} draining.")
    return RedirectResponse("/workers", status_code=303)
