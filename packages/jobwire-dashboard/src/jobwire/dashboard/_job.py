"""One job: its attempts, payload, result, attributes, live state, and actions."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire.client import Job, JobFailure
from jobwire.dashboard._format import body
from jobwire.dashboard._render import dashboard, flash
from jobwire.dashboard._security import ensure_writable, verified_form


def _job_id(request: Request) -> str:
    job_id: str = request.path_params["job_id"]
    return job_id


def attempts(job: Job) -> list[JobFailure]:
    """Every failed attempt the gateway keeps, oldest first."""
    if job.errors:
        return list(job.errors)
    return [job.last_error] if job.last_error is not None else []


async def job_page(request: Request) -> Response:
    """GET /jobs/{id}: the job's detail."""
    board = dashboard(request)
    job = await board.client.get_job(_job_id(request))
    payload = body(job.raw_payload, job.content_type)
    return board.page(
        request,
        "job.html",
        job=job,
        payload=payload,
        attempts=attempts(job),
        copy_text=payload.text if payload.kind in ("json", "empty") else "",
    )


async def cancel(request: Request) -> Response:
    """POST /jobs/{id}/cancel."""
    board = dashboard(request)
    ensure_writable(board.settings)
    await verified_form(request)
    job = await board.client.cancel_job(_job_id(request), reason="cancelled from the dashboard")
    flash(request, f"Job {job.id} is {job.state}.")
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


async def enqueue_copy(request: Request) -> Response:
    """POST /jobs/{id}/copy: enqueues a new job like this one, with the edited payload."""
    board = dashboard(request)
    ensure_writable(board.settings)
    form = await verified_form(request)
    job = await board.client.get_job(_job_id(request))
    payload: Any
    content_type: str | None = None
    if body(job.raw_payload, job.content_type).kind in ("json", "empty"):
        text = str(form.get("payload", "")).strip()
        try:
            payload = json.loads(text) if text else None
        except ValueError as error:
            raise HTTPException(400, f"the payload is not JSON: {error}") from error
    else:
        # Bytes go to the gateway as they are, with their content type.
        payload, content_type = job.raw_payload, job.content_type
    copy = await board.client.enqueue(
        job.type,
        payload,
        queue=job.queue,
        max_retries=job.max_retries,
        timeout=job.timeout,
        attributes=dict(job.attributes),
        content_type=content_type,
    )
    flash(request, f"Enqueued {copy.id}, a copy of {job.id}.")
    return RedirectResponse(f"/jobs/{copy.id}", status_code=303)
