from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobwire.v1 import job_pb2
from jobwire.worker import JobContext, SerializationError, current_context
from jobwire.worker import _context as context_module


def make_job(**fields: Any) -> job_pb2.Job:
    fields.setdefault("id", "job-1")
    fields.setdefault("type", "t")
    fields.setdefault("queue", "default")
    return job_pb2.Job(**fields)


class Sink:
    def __init__(self) -> None:
        self.updates: list[tuple[str, job_pb2.JobProgress]] = []
        self.threads: set[int] = set()
        self.event = asyncio.Event()

    def __call__(self, lease_id: str, update: job_pb2.JobProgress) -> None:
        self.updates.append((lease_id, update))
        self.threads.add(threading.get_ident())
        self.event.set()

    @property
    def values(self) -> list[float]:
        return [u.current for _, u in self.updates]


async def test_job_fields() -> None:
    job = make_job(
        queue="mail",
        type="email:send",
        max_retries=5,
        attributes={"tenant": "acme"},
        content_type="application/json",
        payload=b'{"to": "a@example.com"}',
    )
    ctx = JobContext(job, lease_id="lease-1", attempt=2, worker_id="w-1")
    assert ctx.job is job
    assert (ctx.id, ctx.type, ctx.queue) == ("job-1", "email:send", "mail")
    assert (ctx.attempt, ctx.max_retries, ctx.lease_id, ctx.worker_id) == (2, 5, "lease-1", "w-1")
    assert dict(ctx.attributes) == {"tenant": "acme"}
    assert ctx.timeout is None
    assert ctx.deadline is None
    assert not ctx.cancelled
    assert repr(ctx) == "<JobContext id='job-1' type='email:send' attempt=2>"


async def test_a_fired_job_says_its_schedule_and_occurrence() -> None:
    attributes = {
        "jobwire.schedule": "daily-report",
        "jobwire.occurrence_time": "2026-12-07T09:00:00Z",
    }
    ctx = JobContext(make_job(attributes=attributes))
    assert ctx.schedule == "daily-report"
    assert ctx.occurrence_time == datetime(2026, 12, 7, 9, tzinfo=UTC)
    plain = JobContext(make_job())
    assert (plain.schedule, plain.occurrence_time) == (None, None)


async def test_attempt_defaults_to_the_jobs() -> None:
    assert JobContext(make_job(attempt=3)).attempt == 3
    assert JobContext(make_job()).attempt == 1


async def test_deadline_follows_the_timeout() -> None:
    job = make_job()
    job.timeout.FromTimedelta(timedelta(seconds=90))
    before = datetime.now(UTC)
    ctx = JobContext(job)
    assert ctx.timeout == timedelta(seconds=90)
    assert ctx.deadline is not None
    assert (
        before + timedelta(seconds=90) <= ctx.deadline <= datetime.now(UTC) + timedelta(seconds=90)
    )


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_payload_is_decoded(content_type: str) -> None:
    ctx = JobContext(make_job(content_type=content_type, payload=b'{"n": [1, 2]}'))
    assert ctx.payload == {"n": [1, 2]}
    assert ctx.payload is ctx.payload  # decoded once
    assert ctx.raw_payload == b'{"n": [1, 2]}'
    assert ctx.content_type == content_type


@pytest.mark.parametrize("content_type", ["", "application/octet-stream", "text/plain"])
async def test_other_payloads_are_bytes(content_type: str) -> None:
    ctx = JobContext(make_job(content_type=content_type, payload=b"\x00raw"))
    assert ctx.payload == b"\x00raw"


async def test_invalid_json_payload_raises_serialization_error() -> None:
    ctx = JobContext(make_job(content_type="application/json", payload=b"{nope"))
    with pytest.raises(SerializationError, match="cannot decode the application/json payload"):
        _ = ctx.payload


async def test_custom_serializer_decides_what_is_decoded() -> None:
    class Upper:
        content_type = "text/plain"

        def dumps(self, value: Any) -> bytes:
            return str(value).encode()

        def loads(self, data: bytes) -> Any:
            return data.decode().upper()

    ctx = JobContext(make_job(content_type="text/plain", payload=b"hi"), serializer=Upper())
    assert ctx.payload == "HI"
    json_ctx = JobContext(
        make_job(content_type="application/json", payload=b"{}"), serializer=Upper()
    )
    assert json_ctx.payload == b"{}"


async def test_log_adds_the_job_to_records(caplog: pytest.LogCaptureFixture) -> None:
    ctx = JobContext(make_job(type="email:send"), attempt=3, worker_id="w-1")
    with caplog.at_level(logging.INFO, logger="jobwire.worker.job"):
        ctx.log.info("sending %s", "now")
    [record] = caplog.records
    assert record.getMessage() == "sending now"
    assert record.name == "jobwire.worker.job"
    assert (record.job_id, record.job_type, record.attempt, record.worker_id) == (  # type: ignore[attr-defined]
        "job-1",
        "email:send",
        3,
        "w-1",
    )
    assert ctx.log is ctx.log


async def test_cancel_sets_flag_reason_and_event() -> None:
    ctx = JobContext(make_job())
    early = ctx.cancel_event
    assert not early.is_set()
    ctx._cancel("job cancelled")
    ctx._cancel("ignored: the first reason wins")
    assert ctx.cancelled
    assert ctx.cancel_reason == "job cancelled"
    assert early.is_set()
    # An event asked for after the cancellation is set as well.
    late = JobContext(make_job())
    late._cancel("x")
    assert late.cancel_event.is_set()


async def test_progress_is_throttled_and_the_latest_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_module, "PROGRESS_INTERVAL", 0.05)
    sink = Sink()
    ctx = JobContext(make_job(), lease_id="lease-1", progress_sink=sink)
    ctx.progress(1, 10, "one")
    assert sink.values == [1]  # the first update goes out at once
    ctx.progress(2, 10)
    ctx.progress(3, 10, "three")
    assert sink.values == [1]
    sink.event.clear()
    async with asyncio.timeout(5):
        await sink.event.wait()
    assert sink.values == [1, 3]
    lease_id, update = sink.updates[-1]
    assert (lease_id, update.total, update.message) == ("lease-1", 10, "three")


async def test_finish_flushes_pending_progress_then_ignores_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_module, "PROGRESS_INTERVAL", 60)
    sink = Sink()
    ctx = JobContext(make_job(), progress_sink=sink)
    ctx.progress(1)
    ctx.progress(2)
    ctx._finish(flush=True)
    assert sink.values == [1, 2]
    ctx.progress(3)
    assert sink.values == [1, 2]

    dropped = Sink()
    other = JobContext(make_job(), progress_sink=dropped)
    other.progress(1)
    other.progress(2)
    other._finish(flush=False)
    assert dropped.values == [1]


async def test_progress_from_a_thread_reaches_the_loop_thread() -> None:
    sink = Sink()
    ctx = JobContext(make_job(), progress_sink=sink)
    await asyncio.to_thread(ctx.progress, 5, 10, "from a thread")
    async with asyncio.timeout(5):
        await sink.event.wait()
    assert sink.values == [5]
    assert sink.threads == {threading.get_ident()}


async def test_current_context_outside_a_handler() -> None:
    with pytest.raises(RuntimeError, match="outside a jobwire job handler"):
        current_context()


def test_a_handler_can_be_called_without_a_loop() -> None:
    updates: list[float] = []

    def handler(ctx: JobContext) -> int:
        ctx.progress(1, 2)
        ctx.progress(2, 2)
        return int(ctx.payload["n"]) * 2

    ctx = JobContext(
        make_job(content_type="application/json", payload=b'{"n": 21}'),
        progress_sink=lambda lease_id, update: updates.append(update.current),
    )
    assert handler(ctx) == 42
    assert updates == [1, 2]
