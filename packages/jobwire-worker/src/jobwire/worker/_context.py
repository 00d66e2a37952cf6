"""What a handler receives: the job, its decoded payload and the attempt's controls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from jobwire.v1 import job_pb2
from jobwire.worker._errors import SerializationError
from jobwire.worker._serializer import JsonSerializer, Serializer, media_type

ProgressSink = Callable[[str, job_pb2.JobProgress], None]
"""Receives a context's progress updates, on the event loop's thread."""

_job_logger = logging.getLogger("jobwire.worker.job")

_CURRENT: ContextVar[JobContext] = ContextVar("jobwire_worker_job_context")

# Progress frames cost the gateway as much as an ack frame; a handler calling
# progress() in a tight loop must not flood the stream. The latest value wins.
PROGRESS_INTERVAL = 0.5

# Guards the lazily created cancel event against a concurrent cancel; both
# sides are rare, so one lock for every context is enough.
_CANCEL_LOCK = threading.Lock()

#: Attributes the gateway sets on a job a schedule fired.
SCHEDULE_ATTRIBUTE = "jobwire.schedule"
OCCURRENCE_ATTRIBUTE = "jobwire.occurrence_time"

_UNDECODED: Any = object()
_DEFAULT_SERIALIZER = JsonSerializer()


def _drop_progress(lease_id: str, update: job_pb2.JobProgress) -> None:
    del lease_id, update


class JobContext:
    """One attempt of one job, as its handler sees it.

    The worker builds one per delivery and passes it to the handler; inside
    the handler (and code it calls, in a task or a thread) it is also
    available as :func:`current_context`.

    Args:
        job: The delivered job.
        lease_id: Lease of the delivery.
        attempt: Attempt number (1 on the first delivery).
        worker_id: Id of the worker running the attempt.
        serializer: Decodes the payload when its content type matches.
        progress_sink: Receives throttled progress updates on the loop thread;
            the default drops them (handy in tests).
        loop: Loop the worker runs on; defaults to the running loop, if any.
            Without a loop (a handler unit-tested synchronously) progress
            goes to ``progress_sink`` at once, unthrottled.
    """

    __slots__ = (
        "_attempt",
        "_cancel_event",
        "_cancel_reason",
        "_cancelled",
        "_deadline",
        "_finished",
        "_job",
        "_last_progress",
        "_lease_id",
        "_log",
        "_loop",
        "_loop_thread",
        "_payload",
        "_pending_progress",
        "_progress_timer",
        "_serializer",
        "_sink",
        "_timeout",
        "_worker_id",
    )

    def __init__(
        self,
        job: job_pb2.Job,
        *,
        lease_id: str = "",
        attempt: int | None = None,
        worker_id: str = "",
        serializer: Serializer = _DEFAULT_SERIALIZER,
        progress_sink: ProgressSink = _drop_progress,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._job = job
        self._lease_id = lease_id
        self._attempt = attempt or job.attempt or 1
        self._worker_id = worker_id
        self._serializer = serializer
        self._sink = progress_sink
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._payload: Any = _UNDECODED
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._cancelled = False
        self._cancel_reason: str | None = None
        self._cancel_event: threading.Event | None = None
        self._finished = False
        self._pending_progress: job_pb2.JobProgress | None = None
        self._progress_timer: asyncio.TimerHandle | None = None
        self._last_progress = float("-inf")
        if job.HasField("timeout"):
            self._timeout: float | None = job.timeout.seconds + job.timeout.nanos / 1e9
            self._deadline: datetime | None = datetime.now(UTC) + timedelta(seconds=self._timeout)
        else:
            self._timeout = None
            self._deadline = None

    def __repr__(self) -> str:
        return f"<JobContext id={self.id!r} type={self.type!r} attempt={self.attempt}>"

    # The job ----------------------------------------------------------------

    @property
    def job(self) -> job_pb2.Job:
        """The delivered job message (read it, do not modify it)."""
        return self._job

    @property
    def id(self) -> str:
        """The job's id."""
        return self._job.id

    @property
    def type(self) -> str:
        """The job's type, which picked the handler."""
        return self._job.type

    @property
    def queue(self) -> str:
        """Queue the job came from."""
        return self._job.queue

    @property
    def content_type(self) -> str:
        """Media type of the payload."""
        return self._job.content_type

    @property
    def raw_payload(self) -> bytes:
        """The payload bytes as enqueued."""
        return self._job.payload

    @property
    def payload(self) -> Any:
        """The payload, decoded when its content type is the serializer's.

        Decoded on first access (in the handler's thread for sync handlers,
        off the event loop); payloads of any other content type are returned
        as bytes.

        Raises:
            SerializationError: The payload is not valid for its content type;
                the job fails without retries.
        """
        if self._payload is _UNDECODED:
            job = self._job
            if media_type(job.content_type) == media_type(self._serializer.content_type):
                try:
                    self._payload = self._serializer.loads(job.payload)
                except Exception as exc:
                    raise SerializationError(
                        f"cannot decode the {job.content_type} payload of job {job.id}: {exc}"
                    ) from exc
            else:
                self._payload = job.payload
        return self._payload

    @property
    def attempt(self) -> int:
        """Attempt number of this delivery, 1 on the first."""
        return self._attempt

    @property
    def max_retries(self) -> int:
        """Retries the job allows after its first failed attempt."""
        return self._job.max_retries

    @property
    def attributes(self) -> Mapping[str, str]:
        """The job's free-form attributes."""
        return self._job.attributes

    @property
    def schedule(self) -> str | None:
        """Name of the schedule that fired this job, or None for an enqueued job."""
        return self._job.attributes.get(SCHEDULE_ATTRIBUTE)

    @property
    def occurrence_time(self) -> datetime | None:
        """The occurrence this job is for (UTC), or None unless a schedule fired it.

        The nominal time of the timetable ("0 9 * * *" fires for 09:00 even
        when the job runs at 09:03 or is retried tomorrow), so a daily report
        knows its date; for a schedule triggered by hand, the time of the call.
        """
        text = self._job.attributes.get(OCCURRENCE_ATTRIBUTE)
        if not text:
            return None
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except ValueError:
            return None  # not set by a gateway; the raw text stays in `attributes`

    @property
    def timeout(self) -> timedelta | None:
        """Longest this attempt may run, or None without a limit."""
        return None if self._timeout is None else timedelta(seconds=self._timeout)

    @property
    def deadline(self) -> datetime | None:
        """When this attempt's timeout ends (UTC), or None without a timeout."""
        return self._deadline

    @property
    def lease_id(self) -> str:
        """Lease of this delivery."""
        return self._lease_id

    @property
    def worker_id(self) -> str:
        """Id of the worker running the attempt."""
        return self._worker_id

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """Logger (``jobwire.worker.job``) that adds the job to every record.

        Records carry ``job_id``, ``job_type``, ``attempt`` and ``worker_id``
        in their ``extra`` fields, for structured log handlers.
        """
        if self._log is None:
            self._log = logging.LoggerAdapter(
                _job_logger,
                {
                    "job_id": self._job.id,
                    "job_type": self._job.type,
                    "attempt": self._attempt,
                    "worker_id": self._worker_id,
                },
            )
        return self._log

    # Cancellation -----------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once the attempt should stop: job cancelled, timed out, lease lost.

        Async handlers are cancelled as well; sync handlers cannot be
        interrupted and should check this (or wait on :attr:`cancel_event`)
        between steps of long work.
        """
        return self._cancelled

    @property
    def cancel_reason(self) -> str | None:
        """Why the attempt was cancelled, or None."""
        return self._cancel_reason

    @property
    def cancel_event(self) -> threading.Event:
        """A :class:`threading.Event` set on cancellation.

        ``ctx.cancel_event.wait(5)`` is a sleep that ends early on
        cancellation, usable from sync handlers.
        """
        with _CANCEL_LOCK:
            if self._cancel_event is None:
                self._cancel_event = threading.Event()
                if self._cancelled:
                    self._cancel_event.set()
            return self._cancel_event

    def _cancel(self, reason: str) -> None:
        with _CANCEL_LOCK:
            if self._cancelled:
                return
            self._cancel_reason = reason
            self._cancelled = True
            if self._cancel_event is not None:
                self._cancel_event.set()

    # Progress ---------------------------------------------------------------

    def progress(self, current: float, total: float = 0, message: str = "") -> None:
        """Report how far the handler got; shows as the job's ``progress``.

        Callable from async and sync handlers (any thread). Updates are
        throttled to one frame per job every half second; the latest value
        wins and the last one is sent before the job's ack.

        Args:
            current: Units done so far.
            total: Units in all; 0 when unknown.
            message: Short status line.
        """
        update = job_pb2.JobProgress(current=current, total=total, message=message)
        if self._loop is None:
            self._sink(self._lease_id, update)
            return
        if threading.get_ident() == self._loop_thread:
            self._offer_progress(update)
            return
        # RuntimeError: the worker's loop is closed, nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._offer_progress, update)

    def _offer_progress(self, update: job_pb2.JobProgress) -> None:
        assert self._loop is not None
        if self._finished:
            return
        self._pending_progress = update
        if self._progress_timer is not None:
            return
        wait = self._last_progress + PROGRESS_INTERVAL - self._loop.time()
        if wait <= 0:
            self._flush_progress()
        else:
            self._progress_timer = self._loop.call_later(wait, self._flush_progress)

    def _flush_progress(self) -> None:
        self._progress_timer = None
        update, self._pending_progress = self._pending_progress, None
        if update is not None:
            assert self._loop is not None
            self._last_progress = self._loop.time()
            self._sink(self._lease_id, update)

    def _finish(self, *, flush: bool) -> None:
        """End the attempt: send (or drop) the pending progress, ignore later updates."""
        if self._finished:
            return
        if self._progress_timer is not None:
            self._progress_timer.cancel()
        if flush:
            self._flush_progress()
        self._progress_timer = None
        self._pending_progress = None
        self._finished = True


# The worker's side of a context ----------------------------------------------
# The session drives an attempt through these four calls only; everything else
# on JobContext is the handler's view.


def enter_attempt(ctx: JobContext) -> None:
    """Make ``ctx`` what :func:`current_context` returns in the running task."""
    _CURRENT.set(ctx)


def attempt_timeout(ctx: JobContext) -> float | None:
    """Seconds the attempt may run, or None without a limit."""
    return ctx._timeout


def cancel_attempt(ctx: JobContext, reason: str) -> None:
    """Mark the attempt cancelled (the first reason wins) and set its cancel event."""
    ctx._cancel(reason)


def end_attempt(ctx: JobContext, *, flush: bool) -> None:
    """End the attempt: send (``flush``) or drop its pending progress, ignore later updates."""
    ctx._finish(flush=flush)


def current_context() -> JobContext:
    """Return the context of the job the calling code runs for.

    Works in a handler and anything it calls, including sync handlers in
    their worker thread.

    Raises:
        RuntimeError: Not called from within a job handler.
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise RuntimeError("current_context() called outside a jobwire job handler") from None
