"""AWS SQS provider (``type = "sqs"``), through aiobotocore.

How the semantics table maps onto SQS:

* **Leases are visibility.** A message is received with a visibility covering
  the lease, ``extend_lease`` is ``ChangeMessageVisibility``, ack is
  ``DeleteMessage``, a nack's retry is the visibility set to the backoff, and
  a lease that expires or whose worker's stream drops gets visibility 0, so
  the job is available again at once. Lease expiry and job timeouts run on the
  gateway's own timers (SQS visibility is whole seconds and only the safety
  net for a gateway that died); leases longer than ``visibility_timeout`` are
  renewed while they last.
* **Attempts** are ``ApproximateReceiveCount`` less the receipts that were no
  attempt (a message handed back unleased), which the records count.
* **Long polling on demand.** Per queue, a dispatcher runs ``ReceiveMessage``
  calls only while consumers wait in :meth:`SqsProvider.receive`, asking for
  no more messages than they have credits, and hands each message to a
  waiting consumer that takes its type. A receive call in flight is never
  cancelled (what SQS already handed over would stay invisible): messages
  nobody waits for any more go back at once.
* **Job records** live in the gateway's database (:mod:`._sqs_records`), with
  writes batched; SQS calls that must follow a write (deleting a finished
  job's message) run once it is committed. A message whose record is finished
  (cancelled, say) is deleted on receipt. Other gateways' cancellations of
  jobs leased here are looked up every ``sync_interval``.
* **Delays** up to 15 minutes are ``DelaySeconds``; the gateway's scheduler
  holds longer ones (:attr:`SqsProvider.max_native_delay`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import grpc
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from jobwire.gateway._config import SqsProviderSettings
from jobwire.gateway._errors import (
    GatewayError,
    JobNotFoundError,
    JobTerminalError,
    PayloadTooLargeError,
    UnavailableError,
)
from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.gateway.providers._sqs_records import JobRecords, effective
from jobwire.gateway.providers.base import (
    AckRequest,
    Consumer,
    Delivery,
    JobEvents,
    JobFilter,
    LeaseOutcome,
    NackRequest,
    QueueCounts,
    QueueProvider,
    Revocation,
    RevokeReason,
    lease_deadline,
)
from jobwire.v1 import job_pb2

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

logger = logging.getLogger("jobwire.gateway.sqs")

MAX_DELAY = 900
"""Longest ``DelaySeconds`` SQS takes."""
MAX_VISIBILITY = 43_200
"""Longest visibility SQS allows a message, counted from its receipt."""
_BATCH = 10  # entries per SQS batch call and messages per ReceiveMessage
_MAX_ATTRIBUTES = 10
_MAX_POLLS = 10  # receive calls in flight per queue: up to 100 messages
_CALLS_PER_QUEUE = 8  # batch calls in flight per queue and kind
_SDK_ATTEMPTS = 3  # botocore's own tries (standard mode: throttling, 5xx, network errors)
_FIRST_RECEIVE_BACKOFF = 0.1
_MAX_RECEIVE_BACKOFF = 2.0
# A message whose type no waiting consumer takes goes back for this long, so
# the gateway does not receive it again in a tight loop.
_SKIP_VISIBILITY = 1
_CLOSE_TIMEOUT = 5.0
_FORMAT = 1  # version of the message body
_ATTRIBUTE_NAME = re.compile(
    r"^(?!(?i:aws\.|amazon\.))(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}$"
)
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_GONE = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"})
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_THROTTLED = frozenset(
    {"Throttling", "ThrottlingException", "RequestThrottled", "KMS.ThrottlingException"}
)


class SqsUnavailableError(UnavailableError):
    """SQS cannot be reached, or is throttling or failing; retry later."""

    reason = "PROVIDER_UNAVAILABLE"


class SqsRefusedError(GatewayError):
    """SQS refused the request because of the queue's or the gateway's configuration."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "PROVIDER_FAILED_PRECONDITION"


class QueueNotConfiguredError(SqsRefusedError):
    """The jobwire queue has no SQS queue, or its SQS queue does not exist."""

    reason = "QUEUE_NOT_FOUND"


class _EntryFailed(Exception):
    """SQS refused one entry of a batch call."""

    def __init__(self, code: str, message: str, *, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.sender_fault = sender_fault


def _sqs_error(error: BaseException, url: str) -> GatewayError:
    """Translate an SDK failure into the status clients see."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, _EntryFailed):
        if error.sender_fault:
            return SqsRefusedError(f"SQS refused a message for {url}: {error}")
        return SqsUnavailableError(f"SQS failed a message for {url}: {error}; retry later")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        if code in _NO_QUEUE:
            return QueueNotConfiguredError(f"SQS queue {url} does not exist")
        if code in _THROTTLED or status >= 500:
            return SqsUnavailableError(f"SQS is throttling or failing ({code}); retry later")
        return SqsRefusedError(f"SQS refused the request for {url}: {code}: {message}")
    if isinstance(error, NoCredentialsError):
        return SqsRefusedError(
            "no AWS credentials found (environment, shared config files or instance role)"
        )
    return SqsUnavailableError(f"SQS endpoint unreachable: {error}; retry later")


@dataclass(slots=True, eq=False)
class _Message:
    """A received SQS message."""

    queue: str
    url: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, Any]
    receive_count: int
    received_at: float
    visibility: int
    """Visibility the message was received with."""


@dataclass(slots=True, eq=False)
class _Received:
    """A jobwire job received from SQS, not yet leased."""

    record: JobRecord
    message: _Message
    attempt: int


@dataclass(slots=True, eq=False)
class _Lease:
    id: str
    job: JobRecord
    consumer: Consumer
    message: _Message
    expire_time: float
    timeout_time: float | None
    visible_until: float
    """When the message becomes visible again unless the gateway acts."""
    visibility: int
    timer: asyncio.TimerHandle | None = None
    renewing: bool = False
    """Whether the armed timer renews the visibility rather than ends the lease."""

    @property
    def deadline(self) -> float:
        if self.timeout_time is None:
            return self.expire_time
        return min(self.expire_time, self.timeout_time)


@dataclass(slots=True, frozen=True)
class _Outgoing:
    job_id: str
    url: str
    entry: dict[str, Any]
    size: int


def _encode(record: JobRecord, url: str, delay: int) -> _Outgoing:
    """The ``SendMessageBatch`` entry of a job, and its size as SQS counts it."""
    body: dict[str, Any] = {
        "jobwire": _FORMAT,
        "id": record.id,
        "queue": record.queue,
        "type": record.type,
        "content_type": record.content_type,
        "max_retries": record.max_retries,
        "timeout": record.timeout,
        "deduplication_key": record.deduplication_key,
        "create_time": record.create_time,
        "schedule": record.schedule,
        "payload": base64.b64encode(record.payload).decode("ascii"),
    }
    entry: dict[str, Any] = {}
    size = 0
    if _sqs_attributes_fit(record.attributes):
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in record.attributes.items()
        }
        size += sum(
            len(name) + len("String") + len(value.encode())
            for name, value in record.attributes.items()
        )
    elif record.attributes:
        # SQS takes at most 10 attributes with restricted names and non-empty
        # values; jobs with others carry them in the body instead.
        body["attributes"] = record.attributes
    text = json.dumps(body, separators=(",", ":"))
    entry["MessageBody"] = text
    size += len(text.encode())
    if delay:
        entry["DelaySeconds"] = delay
    if url.endswith(".fifo"):
        # Each job its own group: no ordering holds jobs back. The job id as
        # deduplication id makes a re-sent enqueue one message, while jobwire's
        # own deduplication keys keep their configured window.
        entry["MessageGroupId"] = record.id
        entry["MessageDeduplicationId"] = record.id
    return _Outgoing(record.id, url, entry, size)


def _sqs_attributes_fit(attributes: dict[str, str]) -> bool:
    return len(attributes) <= _MAX_ATTRIBUTES and all(
        _ATTRIBUTE_NAME.match(name)
        and not name.endswith(".")
        and value
        and not _XML_INVALID.search(value)
        for name, value in attributes.items()
    )


def _decode(raw: MessageTypeDef) -> JobRecord:
    """The job a jobwire message carries, as a new pending record.

    Raises:
        ValueError: the message is not a jobwire job.
    """
    try:
        body = json.loads(raw.get("Body", ""))
        if not isinstance(body, dict) or body.get("jobwire") != _FORMAT:
            raise ValueError("not a jobwire message (no `jobwire` format marker)")
        attributes = body.get("attributes")
        if attributes is None:
            attributes = {
                name: value.get("StringValue", "")
                for name, value in raw.get("MessageAttributes", {}).items()
            }
        timeout = body["timeout"]
        return JobRecord(
            id=str(body["id"]),
            queue=str(body["queue"]),
            type=str(body["type"]),
            payload=base64.b64decode(body["payload"], validate=True),
            content_type=str(body["content_type"]),
            attributes={str(k): str(v) for k, v in attributes.items()},
            max_retries=int(body["max_retries"]),
            timeout=float(timeout) if timeout is not None else None,
            deduplication_key=str(body["deduplication_key"]),
            create_time=float(body["create_time"]),
            update_time=float(body["create_time"]),
            state=JobState.PENDING,
            schedule=str(body["schedule"]),
        )
    except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as error:
        raise ValueError(f"malformed jobwire message: {error!r}") from None


class _Batcher:
    """Coalesces single SQS operations into batch calls of up to 10, per queue URL.

    Operations wait only while a previous call on their queue is in flight,
    so an idle gateway sends each at once and a busy one fills batches.
    """

    def __init__(
        self,
        call: Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, BaseException | None]]],
        *,
        max_bytes: int = 0,
    ) -> None:
        self._call = call
        self._max_bytes = max_bytes
        self._lanes: dict[str, deque[tuple[dict[str, Any], int, asyncio.Future[None]]]] = {}
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, url: str, entry: dict[str, Any], size: int = 0) -> asyncio.Future[None]:
        """Queue one entry; the future ends when SQS answered for it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(url, deque()).append((entry, size, future))
        if self._running[url] < _CALLS_PER_QUEUE:
            self._running[url] += 1
            task = asyncio.create_task(self._pump(url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _pump(self, url: str) -> None:
        lane = self._lanes[url]
        try:
            while lane:
                chunk = [lane.popleft()]
                total = chunk[0][1]
                while lane and len(chunk) < _BATCH:
                    if self._max_bytes and total + lane[0][1] > self._max_bytes:
                        break
                    total += lane[0][1]
                    chunk.append(lane.popleft())
                entries = [{**entry, "Id": str(i)} for i, (entry, _, _) in enumerate(chunk)]
                try:
                    outcomes = await self._call(url, entries)
                except Exception as error:
                    failure = _sqs_error(error, url)
                    for _, _, future in chunk:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                for i, (_, _, future) in enumerate(chunk):
                    outcome = outcomes.get(str(i))
                    if future.done():
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            self._running[url] -= 1

    async def drain(self) -> None:
        """Wait for every call in flight."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _batch_outcomes(response: Any) -> dict[str, BaseException | None]:
    outcomes: dict[str, BaseException | None] = {
        entry["Id"]: None for entry in response.get("Successful", [])
    }
    for entry in response.get("Failed", []):
        outcomes[entry["Id"]] = _EntryFailed(
            entry["Code"], entry.get("Message", ""), sender_fault=entry["SenderFault"]
        )
    return outcomes


class _Waiter:
    """A consumer waiting in ``receive`` for up to ``room`` messages."""

    __slots__ = ("consumer", "future", "room", "taken")

    def __init__(self, consumer: Consumer, room: int, future: asyncio.Future[list[_Received]]):
        self.consumer = consumer
        self.room = room
        self.future = future
        self.taken: list[_Received] = []


class _Dispatcher:
    """Long-polls one SQS queue while consumers wait, and hands out what arrives."""

    def __init__(self, provider: SqsProvider, queue: str, url: str) -> None:
        self.queue = queue
        self.url = url
        self._provider = provider
        self._waiters: dict[_Waiter, None] = {}
        self._polls: dict[asyncio.Task[None], int] = {}
        self._receiving: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._closed = False

    @property
    def asked(self) -> int:
        """Messages the receive calls in flight asked for."""
        return sum(self._polls.values())

    def add(self, waiter: _Waiter) -> None:
        self._waiters[waiter] = None
        self._top_up()

    def remove(self, waiter: _Waiter) -> None:
        self._waiters.pop(waiter, None)

    async def close(self) -> None:
        """Stop polling; what calls in flight received comes back after its visibility.

        Calls still waiting in SQS are cancelled; calls whose messages are being
        looked up in the records finish, so no database work is cut off.
        """
        self._closed = True
        for task in self._receiving:
            task.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)

    def _top_up(self) -> None:
        """Start receive calls until they ask for what the waiters have room for."""
        if self._closed:
            return
        demand = sum(w.room for w in self._waiters if not w.future.done())
        uncovered = demand - self.asked
        while uncovered > 0 and len(self._polls) < _MAX_POLLS:
            count = min(_BATCH, uncovered)
            task = asyncio.create_task(self._poll(count), name=f"jobwire-sqs-receive:{self.queue}")
            self._polls[task] = count
            task.add_done_callback(self._poll_done)
            uncovered -= count

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        self._polls.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("SQS receive from %s crashed", self.url, exc_info=task.exception())
        self._top_up()

    async def _poll(self, count: int) -> None:
        provider = self._provider
        waiting = [w for w in self._waiters if not w.future.done()]
        visibility = provider.visibility_for(
            max((w.consumer.lease_duration for w in waiting), default=1)
        )
        task = asyncio.current_task()
        assert task is not None
        try:
            self._receiving.add(task)
            try:
                response = await provider.client.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=count,
                    WaitTimeSeconds=provider.wait_time,
                    VisibilityTimeout=visibility,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=["All"],
                )
            finally:
                self._receiving.discard(task)
            received = await provider.accept(
                self.queue, self.url, response.get("Messages", []), visibility
            )
        except Exception as error:
            # The endpoint is gone, throttling after the SDK's retries, or the
            # records database is down: the waiting workers stay connected and
            # the dispatcher tries again with backoff.
            self._failures += 1
            delay = min(_MAX_RECEIVE_BACKOFF, _FIRST_RECEIVE_BACKOFF * 2 ** (self._failures - 1))
            log = logger.warning if self._failures == 1 else logger.debug
            log(
                "receive from queue %r failed (%s); retrying in %.1fs",
                self.queue,
                _sqs_error(error, self.url),
                delay,
            )
            await asyncio.sleep(delay)
            return
        if self._failures:
            logger.warning("receive from queue %r works again", self.queue)
            self._failures = 0
        self._dispatch(received)

    def _dispatch(self, received: list[_Received]) -> None:
        # Longest waiting first: a consumer served waits again at the back.
        waiters = [w for w in self._waiters if not w.future.done()]
        unwanted: list[_Received] = []
        for item in received:
            for waiter in waiters:
                if len(waiter.taken) < waiter.room and waiter.consumer.accepts(item.record.type):
                    waiter.taken.append(item)
                    break
            else:
                unwanted.append(item)
        for waiter in waiters:
            if waiter.taken:
                waiter.future.set_result(waiter.taken)
        # Back at once when nobody waits any more; a little later when the
        # waiting consumers do not take the type (another gateway's may).
        self._provider.hand_back(unwanted, 0 if not waiters else _SKIP_VISIBILITY)


class SqsProvider(QueueProvider):
    """Queues on AWS SQS, job records in the gateway's database (``type = "sqs"``)."""

    max_native_delay: ClassVar[float | None] = float(MAX_DELAY)

    def __init__(self, settings: SqsProviderSettings, events: JobEvents) -> None:
        super().__init__(settings.retry, events)
        if settings.database_url is None:
            raise ValueError("provider.database_url is unset (GatewaySettings fills it in)")
        self._settings = settings
        self._records = JobRecords(
            settings.database_url,
            dedup_window=settings.dedup_window.total_seconds(),
            retention=settings.history_retention.total_seconds(),
        )
        self._urls = dict(settings.queue_urls)
        self._cap = math.ceil(settings.visibility_timeout.total_seconds())
        self.wait_time = math.ceil(settings.wait_time.total_seconds())
        """``WaitTimeSeconds`` of each receive call."""
        self._stack = AsyncExitStack()
        self._client: SQSClient | None = None
        self._sends = _Batcher(self._send_batch, max_bytes=settings.max_message_bytes)
        self._deletes = _Batcher(self._delete_batch)
        self._visibility = _Batcher(self._visibility_batch)
        self._dispatchers: dict[str, _Dispatcher] = {}
        self._active: dict[str, _Lease] = {}
        # Jobs received from SQS and on their way to a consumer, not yet leased.
        self._received: dict[str, _Received] = {}
        self._workers: Counter[str] = Counter()
        self._published: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def polling(self) -> dict[str, int]:
        """Messages asked for by the receive calls in flight, per queue (for monitoring)."""
        return {name: d.asked for name, d in self._dispatchers.items() if d.asked}

    @property
    def client(self) -> SQSClient:
        """The SQS client, open between :meth:`open` and :meth:`aclose`."""
        if self._client is None:
            raise SqsUnavailableError("the SQS provider is not open")
        return self._client

    async def open(self) -> None:
        """Open the SQS client and the records database, and check the queues exist.

        Raises:
            RuntimeError: a configuration error (region, profile, credentials,
                a queue URL that does not exist, the database).
        """
        settings = self._settings
        try:
            session = AioSession(profile=settings.profile)
            config = AioConfig(
                retries={"mode": "standard", "max_attempts": _SDK_ATTEMPTS},
                connect_timeout=5,
                read_timeout=self.wait_time + 10,
                max_pool_connections=_MAX_POLLS * (len(self._urls) + 1) + 3 * _CALLS_PER_QUEUE,
            )
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "sqs",
                    region_name=settings.region,
                    endpoint_url=settings.endpoint_url,
                    config=config,
                )
            )
        except NoRegionError:
            raise RuntimeError(
                "provider.region: no AWS region configured (set it, or AWS_REGION)"
            ) from None
        except ProfileNotFound as error:
            raise RuntimeError(f"provider.profile: {error}") from None
        try:
            await self._check_queues()
            await self._records.open()
        except BaseException:
            await self._stack.aclose()
            raise
        self._sync_task = asyncio.create_task(self._sync_loop(), name="jobwire-sqs-sync")

    async def _check_queues(self) -> None:
        named = {f"provider.queue_urls.{name}": url for name, url in self._urls.items()}
        if self._settings.dead_letter_queue_url:
            named["provider.dead_letter_queue_url"] = self._settings.dead_letter_queue_url
        for key, url in named.items():
            try:
                await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            except (ClientError, NoCredentialsError) as error:
                raise RuntimeError(f"{key}: {_sqs_error(error, url).message}") from None
            except BotoCoreError as error:
                # The endpoint may come up after the gateway: serve and retry.
                logger.warning("%s: cannot reach SQS at start (%s); retrying as used", key, error)
                return

    async def aclose(self) -> None:
        """Stop receiving, commit the records, finish pending SQS calls, close the client."""
        self._closing.set()
        if self._sync_task is not None:
            await self._sync_task
        for dispatcher in self._dispatchers.values():
            await dispatcher.close()
        for lease in self._active.values():
            if lease.timer is not None:
                lease.timer.cancel()
        await self._records.close()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                for batcher in (self._sends, self._deletes, self._visibility):
                    await batcher.drain()
        except TimeoutError:
            logger.warning("SQS calls still pending at shutdown were abandoned")
        await self._stack.aclose()
        self._client = None

    # Producer side -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Record jobs, then send their messages; nothing is sent for a job refused."""
        # A client that gives up half-way must not leave records without messages.
        return await asyncio.shield(self._enqueue(jobs))

    async def _enqueue(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        now = time.time()
        candidates: list[tuple[NewJob, JobRecord]] = []
        outgoing: list[_Outgoing] = []
        for new in jobs:
            record = JobRecord.create(new, now)
            outgoing.append(self._outgoing(record, now))
            candidates.append((new, record))
        results = await self._records.insert(candidates, now)
        fresh = [
            out for (_, duplicate), out in zip(results, outgoing, strict=True) if not duplicate
        ]
        if fresh:
            sent = await asyncio.gather(
                *(self._sends.submit(out.url, out.entry, out.size) for out in fresh),
                return_exceptions=True,
            )
            failed = [(out, e) for out, e in zip(fresh, sent, strict=True) if e is not None]
            if failed:
                # Forget the jobs that were not sent, so a retry with the same
                # request ids enqueues exactly those.
                await self._records.delete(out.job_id for out, _ in failed)
                out, error = failed[0]
                raise _sqs_error(error, out.url)
        for record, duplicate in results:
            if not duplicate:
                self._publish(record)
        return results

    def _outgoing(self, record: JobRecord, now: float) -> _Outgoing:
        url = self._url(record.queue)
        delay = 0
        if record.schedule_time is not None and record.schedule_time > now:
            ahead = record.schedule_time - now
            if url.endswith(".fifo"):
                raise SqsRefusedError(
                    f"queue {record.queue!r} is an SQS FIFO queue, which has no per-message "
                    "delay; set [scheduler] delay_threshold = 0 so the scheduler holds "
                    "every delayed job"
                )
            if ahead > MAX_DELAY + 1:
                raise SqsRefusedError(
                    f"SQS delays jobs by at most {MAX_DELAY}s; the scheduler must hold "
                    "longer ones ([scheduler] enabled = true, delay_threshold at most 15m)"
                )
            # Whole seconds, rounded up: never delivered early.
            delay = min(MAX_DELAY, math.ceil(ahead))
        out = _encode(record, url, delay)
        limit = self._settings.max_message_bytes
        if out.size > limit:
            raise PayloadTooLargeError(
                "payload",
                f"is {len(record.payload)} bytes; as an SQS message (base64 body and "
                f"attributes) the job takes {out.size} bytes, over SQS's limit of {limit} bytes",
            )
        return out

    def _url(self, queue: str) -> str:
        try:
            return self._urls[queue]
        except KeyError:
            names = ", ".join(sorted(self._urls))
            raise QueueNotConfiguredError(
                f"queue {queue!r} has no SQS queue; add it to provider.queue_urls "
                f"(configured: {names})",
                queue=queue,
            ) from None

    async def get_job(self, job_id: str) -> JobRecord:
        """Return a job: leased here, or from the records."""
        lease = self._active.get(job_id)
        record = lease.job if lease is not None else await self._records.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        if job_id in self.events.watched():
            # A WatchJob stream starts from this; later changes found by the
            # sync loop are the ones newer than it.
            self._published[job_id] = max(self._published.get(job_id, 0.0), record.update_time)
        return effective(record, time.time())

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List from the records, newest first; the cursor is creation time and id."""
        return await self._records.list(where, limit, cursor, time.time())

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a job; one leased here has its lease revoked and its message deleted.

        A job leased on another gateway is cancelled in the records; that
        gateway revokes the lease within its ``sync_interval``. A job waiting
        in SQS is deleted when next received.
        """
        message = reason or "cancelled"
        now = time.time()
        lease = self._active.get(job_id)
        if lease is not None:
            job = lease.job
            self._drop(lease)
            lease.consumer.on_revoke(
                Revocation(lease.id, job_id, RevokeReason.CANCELLED, f"job cancelled: {message}")
            )
            job.last_error = Failure(message, "CANCELLED", retryable=False, attempt=job.attempt)
            self._finish(
                job, JobState.CANCELLED, now, functools.partial(self._delete, lease.message)
            )
            await self._records.flush()
            return job
        record = await self._records.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        if record.state is JobState.CANCELLED:
            return record
        if record.state.is_terminal:
            raise JobTerminalError(job_id, record.state.name)
        failure = Failure(message, "CANCELLED", retryable=False, attempt=record.attempt)
        stored = await self._records.cancel(job_id, failure, now)
        if stored is None:
            raise JobNotFoundError(job_id)
        if stored.state is not JobState.CANCELLED:
            raise JobTerminalError(job_id, stored.state.name)
        self._publish(stored)
        return stored

    async def stats(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the records; workers are this gateway's."""
        now = time.time()
        counts = await self._records.counts(queue, now)
        if queue is not None:
            names = [queue]
        else:
            names = sorted(set(counts) | {name for name, n in self._workers.items() if n})
        stats = []
        for name in names:
            by_state, since = counts.get(name, (dict.fromkeys(JobState, 0), None))
            stats.append(
                QueueCounts(
                    queue=name,
                    by_state=by_state,
                    oldest_pending_age=0.0 if since is None else max(0.0, now - since),
                    workers=self._workers[name],
                    backend=await self._approximate_counts(name),
                )
            )
        return stats

    async def _approximate_counts(self, queue: str) -> tuple[int, int, int] | None:
        """SQS's own approximate counts; None when the queue is unknown or unreachable."""
        url = self._urls.get(queue)
        if url is None:
            return None
        try:
            response = await self.client.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
        except (ClientError, BotoCoreError) as error:
            # Stats still answer from the records when SQS is away.
            logger.warning("queue %r: no approximate counts from SQS: %s", queue, error)
            return None
        attributes = response.get("Attributes", {})
        return (
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    # Worker side -------------------------------------------------------------

    async def connect(self, consumer: Consumer) -> None:
        """Count the consumer as a worker of its queues."""
        for name in consumer.queues:
            self._workers[name] += 1

    async def receive(self, consumer: Consumer, max_jobs: int) -> list[Delivery]:
        """Wait for jobs from the consumer's queues' dispatchers and lease them.

        Raises:
            QueueNotConfiguredError: a queue of the consumer has no SQS queue.
        """
        dispatchers = [self._dispatcher(name) for name in consumer.queues]
        loop = asyncio.get_running_loop()
        while True:
            waiter = _Waiter(consumer, max_jobs, loop.create_future())
            for dispatcher in dispatchers:
                dispatcher.add(waiter)
            try:
                taken = await waiter.future
            except asyncio.CancelledError:
                # Handed over just as the stream ended: back to the queue at once.
                if waiter.future.done() and not waiter.future.cancelled():
                    self.hand_back(waiter.future.result(), 0)
                raise
            finally:
                for dispatcher in dispatchers:
                    dispatcher.remove(waiter)
            now = time.time()
            for item in taken:
                self._received.pop(item.record.id, None)
            deliveries = [self._lease(consumer, item, now) for item in taken]
            if deliveries:
                return deliveries

    def _dispatcher(self, queue: str) -> _Dispatcher:
        dispatcher = self._dispatchers.get(queue)
        if dispatcher is None:
            dispatcher = self._dispatchers[queue] = _Dispatcher(self, queue, self._url(queue))
        return dispatcher

    async def accept(
        self, queue: str, url: str, messages: Sequence[MessageTypeDef], visibility: int
    ) -> list[_Received]:
        """Turn received messages into jobs to hand out.

        Messages of finished jobs are deleted (or dead-lettered); a job whose
        last attempt was lost with its gateway and had no retries left is dead.
        """
        now = time.time()
        decoded: list[tuple[_Message, JobRecord]] = []
        for raw in messages:
            message = _Message(
                queue=queue,
                url=url,
                message_id=raw.get("MessageId", ""),
                receipt_handle=raw.get("ReceiptHandle", ""),
                body=raw.get("Body", ""),
                attributes=dict(raw.get("MessageAttributes", {})),
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                received_at=now,
                visibility=visibility,
            )
            try:
                decoded.append((message, _decode(raw)))
            except ValueError as error:
                self._quarantine(message, error)
        if not decoded:
            return []
        views = await self._records.for_receipt([record.id for _, record in decoded])
        received: list[_Received] = []
        for message, carried in decoded:
            view = views.get(carried.id)
            if view is None:
                await self._records.adopt(carried)
                record, uncounted = carried, 0
            else:
                record, uncounted = view.record, view.uncounted
            if record.state.is_terminal:
                self._settle(record, message)
                continue
            lease = self._active.get(record.id)
            if lease is not None:
                # SQS handed out a message this gateway leases (standard queues
                # may deliver twice): keep the newest receipt, which deletes it.
                lease.message = message
                lease.visible_until = now + visibility
                lease.visibility = visibility
                self._records.count_uncounted(record.id)
                continue
            twin = self._received.get(record.id)
            if twin is not None:
                # Received twice before it was leased: one job, the newest receipt.
                twin.message = message
                self._records.count_uncounted(record.id)
                continue
            attempt = max(message.receive_count - uncounted, record.attempt + 1)
            if attempt > record.max_retries + 1:
                lost = attempt - 1
                record.attempt = lost
                record.last_error = Failure(
                    f"attempt {lost} was lost: its lease ended without an answer",
                    "WORKER_LOST",
                    attempt=lost,
                )
                self._finish(
                    record, JobState.DEAD, now, functools.partial(self._dead_letter, message)
                )
                continue
            item = _Received(record, message, attempt)
            self._received[record.id] = item
            received.append(item)
        return received

    def hand_back(self, items: Iterable[_Received], visibility: int) -> None:
        """Return received messages unleased: not an attempt, visible after ``visibility``."""
        for item in items:
            self._received.pop(item.record.id, None)
            self._records.count_uncounted(
                item.record.id,
                functools.partial(self._set_visibility, item.message, visibility),
            )

    def visibility_for(self, seconds: float) -> int:
        """The SQS visibility covering ``seconds`` of lease: whole seconds, at most the cap."""
        return max(1, min(self._cap, math.ceil(seconds)))

    def _lease(self, consumer: Consumer, item: _Received, now: float) -> Delivery:
        job = item.record
        job.attempt = item.attempt
        job.worker_id = consumer.worker_id
        job.schedule_time = None
        job.state = JobState.PROCESSING
        job.update_time = now
        message = item.message
        lease = _Lease(
            id=f"{job.id}.{job.attempt}",
            job=job,
            consumer=consumer,
            message=message,
            expire_time=now + consumer.lease_duration,
            timeout_time=now + job.timeout if job.timeout is not None else None,
            visible_until=message.received_at + message.visibility,
            visibility=message.visibility,
        )
        self._arm(lease, now)
        consumer.leases[lease.id] = lease
        self._active[job.id] = lease
        self._records.save(job)
        self._publish(job)
        return Delivery(job, lease.id, lease.expire_time)

    async def ack(self, consumer: Consumer, items: Sequence[AckRequest]) -> list[LeaseOutcome]:
        """Complete leased jobs; their messages are deleted once that is recorded."""
        now = time.time()
        outcomes: list[LeaseOutcome] = []
        for item in items:
            lease = consumer.leases.get(item.lease_id)
            if lease is None:
                outcomes.append(await self._fenced(item.lease_id))
                continue
            self._drop(lease)
            job = lease.job
            job.result = item.result
            job.result_content_type = item.result_content_type
            self._finish(
                job, JobState.COMPLETED, now, functools.partial(self._delete, lease.message)
            )
            outcomes.append(LeaseOutcome(item.lease_id, True))
        return outcomes

    async def nack(self, consumer: Consumer, items: Sequence[NackRequest]) -> list[LeaseOutcome]:
        """Fail attempts: visibility set to the backoff, or dead."""
        now = time.time()
        outcomes: list[LeaseOutcome] = []
        for item in items:
            lease = consumer.leases.get(item.lease_id)
            if lease is None:
                outcomes.append(await self._fenced(item.lease_id))
                continue
            self._drop(lease)
            job = lease.job
            failed = Failure.from_proto(item.failure, attempt=job.attempt, retryable=item.retryable)
            self._fail(lease, failed, now, item.retry_delay)
            outcomes.append(LeaseOutcome(item.lease_id, True))
        return outcomes

    async def extend_leases(
        self, consumer: Consumer, lease_ids: Sequence[str], duration: float
    ) -> list[tuple[str, float | None]]:
        """Extend leases; the messages' visibility follows in one batch call per queue."""
        leases = [consumer.leases.get(lease_id) for lease_id in lease_ids]
        known = [lease for lease in leases if lease is not None]
        visibility = self.visibility_for(duration)
        # The extension counts from when it arrived, not from when SQS answers:
        # the lease must not expire during the round trip.
        now = time.time()
        for lease in known:
            lease.expire_time = now + duration
            self._arm(lease, now, renew=False)
        outcomes = await asyncio.gather(
            *(
                self._visibility.submit(
                    lease.message.url,
                    {
                        "ReceiptHandle": lease.message.receipt_handle,
                        "VisibilityTimeout": visibility,
                    },
                )
                for lease in known
            ),
            return_exceptions=True,
        )
        expiries: dict[str, float | None] = {}
        for lease, outcome in zip(known, outcomes, strict=True):
            if lease.id not in consumer.leases:
                continue  # revoked while SQS answered
            if isinstance(outcome, _EntryFailed) and outcome.code in _GONE:
                # The message is gone or another receipt holds it now (its
                # visibility ran out): this lease is lost.
                self._drop(lease)
                continue
            if outcome is not None:
                # SQS is unreachable: keep the lease; if SQS shows the message
                # again meanwhile, another worker may run it too.
                logger.warning("lease extension of %s not sent to SQS: %s", lease.id, outcome)
            else:
                lease.visible_until = now + visibility
                lease.visibility = visibility
            self._arm(lease, time.time())
            expiries[lease.id] = lease.expire_time
        return [(lease_id, expiries.get(lease_id)) for lease_id in lease_ids]

    async def report_progress(
        self, consumer: Consumer, lease_id: str, progress: job_pb2.JobProgress
    ) -> bool:
        """Store the progress on the job and tell its watchers."""
        lease = consumer.leases.get(lease_id)
        if lease is None:
            return False
        lease.job.progress = progress
        lease.job.update_time = time.time()
        self._records.save(lease.job)
        self._publish(lease.job)
        return True

    async def disconnect(self, consumer: Consumer) -> None:
        """Make every job the consumer held visible again at once, attempt counted."""
        now = time.time()
        for name in consumer.queues:
            self._workers[name] -= 1
        for lease in list(consumer.leases.values()):
            self._drop(lease)
            job = lease.job
            message = f"worker {consumer.worker_id} disconnected during the attempt"
            self._requeue_lost(lease, Failure(message, "WORKER_LOST", attempt=job.attempt), now)

    # State machine -----------------------------------------------------------

    def _arm(self, lease: _Lease, now: float, *, renew: bool = True) -> None:
        """Time the lease's end, or first the renewal of its message's visibility.

        ``renew=False`` while a visibility change is on its way to SQS.
        """
        if lease.timer is not None:
            lease.timer.cancel()
        deadline = lease.deadline
        at, lease.renewing = deadline, False
        renew_at = lease.visible_until - lease.visibility / 2
        if renew and lease.visible_until < deadline and renew_at < deadline:
            at, lease.renewing = renew_at, True
        lease.timer = asyncio.get_running_loop().call_later(
            max(0.0, at - now), self._on_timer, lease
        )

    def _on_timer(self, lease: _Lease) -> None:
        lease.timer = None
        now = time.time()
        if lease.renewing:
            # A lease longer than visibility_timeout: keep the message hidden.
            visibility = self.visibility_for(lease.deadline - now)
            self._set_visibility(lease.message, visibility)
            lease.visible_until = now + visibility
            lease.visibility = visibility
            self._arm(lease, now)
            return
        self._drop(lease)
        job = lease.job
        timed_out = lease.timeout_time is not None and lease.timeout_time <= lease.expire_time
        reason, failed = lease_deadline(job, timed_out, lease.consumer.lease_duration)
        if timed_out:
            self._fail(lease, failed, now, None)
        else:
            self._requeue_lost(lease, failed, now)
        lease.consumer.on_revoke(Revocation(lease.id, job.id, reason, failed.message))

    def _drop(self, lease: _Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        del lease.consumer.leases[lease.id]
        del self._active[lease.job.id]

    def _fail(self, lease: _Lease, failed: Failure, now: float, delay: float | None) -> None:
        job = lease.job
        job.last_error = failed
        if not failed.retryable or job.attempt > job.max_retries:
            self._finish(
                job, JobState.DEAD, now, functools.partial(self._dead_letter, lease.message)
            )
            return
        backoff = self.retry.backoff(job.attempt) if delay is None else delay
        # Whole seconds, rounded up, within the 12 hours SQS allows since receipt.
        allowed = MAX_VISIBILITY - math.ceil(now - lease.message.received_at) - 1
        visibility = max(0, min(allowed, math.ceil(backoff)))
        job.schedule_time = now + visibility
        job.state = JobState.FAILED
        job.update_time = now
        self._records.save(job, functools.partial(self._set_visibility, lease.message, visibility))
        self._publish(job)

    def _requeue_lost(self, lease: _Lease, failed: Failure, now: float) -> None:
        """A lease ended without an answer: visible again at once, attempt counted."""
        job = lease.job
        job.last_error = failed
        if job.attempt > job.max_retries:
            self._finish(
                job, JobState.DEAD, now, functools.partial(self._dead_letter, lease.message)
            )
            return
        job.state = JobState.PENDING
        job.update_time = now
        self._records.save(job, functools.partial(self._set_visibility, lease.message, 0))
        self._publish(job)

    def _finish(
        self, job: JobRecord, state: JobState, now: float, then: Callable[[], None]
    ) -> None:
        job.state = state
        job.update_time = now
        job.end_time = now
        self._records.save(job, then)
        self._publish(job)

    def _publish(self, job: JobRecord) -> None:
        self.events.publish(job)
        if job.id in self.events.watched():
            self._published[job.id] = job.update_time

    async def _fenced(self, lease_id: str) -> LeaseOutcome:
        """Explain why a lease the consumer named is not its own."""
        job_id, _, attempt = lease_id.rpartition(".")
        try:
            job = await self._records.get(job_id) if job_id else None
        except UnavailableError:
            return LeaseOutcome(lease_id, False, "LEASE_NOT_FOUND", "not a lease of this session")
        if job is None or not attempt.isdigit() or int(attempt) > job.attempt:
            return LeaseOutcome(lease_id, False, "LEASE_NOT_FOUND", "no such lease")
        if int(attempt) == job.attempt and job.state is JobState.PROCESSING:
            return LeaseOutcome(
                lease_id, False, "LEASE_NOT_FOUND", "the lease belongs to another worker session"
            )
        if job.state is JobState.CANCELLED and int(attempt) == job.attempt:
            return LeaseOutcome(lease_id, False, "LEASE_REVOKED", "the job was cancelled")
        return LeaseOutcome(
            lease_id,
            False,
            "LEASE_EXPIRED",
            f"lease of attempt {attempt} ended; the job is now {job.state.name.lower()}",
        )

    # SQS calls ---------------------------------------------------------------

    def _settle(self, record: JobRecord, message: _Message) -> None:
        """Remove the message of a finished job (SQS still had it, e.g. after a cancel)."""
        if record.state is JobState.DEAD:
            self._dead_letter(message)
        else:
            self._delete(message)

    def _delete(self, message: _Message) -> None:
        self._watch_call(
            self._deletes.submit(message.url, {"ReceiptHandle": message.receipt_handle}),
            "delete",
            message,
        )

    def _set_visibility(self, message: _Message, seconds: int) -> None:
        entry = {"ReceiptHandle": message.receipt_handle, "VisibilityTimeout": seconds}
        self._watch_call(self._visibility.submit(message.url, entry), "visibility change", message)

    def _dead_letter(self, message: _Message) -> None:
        if self._settings.dead_letter_queue_url is None:
            self._delete(message)
            return
        task = asyncio.create_task(self._move_to_dlq(message, self._settings.dead_letter_queue_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _move_to_dlq(self, message: _Message, dlq: str) -> None:
        entry: dict[str, Any] = {"MessageBody": message.body}
        if message.attributes:
            entry["MessageAttributes"] = {
                name: {
                    k: v
                    for k, v in value.items()
                    if k in ("DataType", "StringValue", "BinaryValue")
                }
                for name, value in message.attributes.items()
            }
        if dlq.endswith(".fifo"):
            entry["MessageGroupId"] = entry["MessageDeduplicationId"] = message.message_id
        try:
            await self._sends.submit(dlq, entry)
        except Exception as error:
            # The message stays; when SQS shows it again, its record is dead
            # and the move is tried again.
            logger.warning(
                "moving a message of queue %r to the DLQ failed: %s", message.queue, error
            )
            return
        self._delete(message)

    def _quarantine(self, message: _Message, error: ValueError) -> None:
        """Keep a message that is no jobwire job out of the way."""
        if self._settings.dead_letter_queue_url is not None:
            logger.error(
                "queue %r: message %s moved to the DLQ: %s",
                message.queue,
                message.message_id,
                error,
            )
            self._dead_letter(message)
        else:
            logger.error(
                "queue %r: message %s ignored: %s (configure dead_letter_queue_url to move "
                "such messages away)",
                message.queue,
                message.message_id,
                error,
            )

    def _watch_call(self, future: asyncio.Future[None], what: str, message: _Message) -> None:
        def done(future: asyncio.Future[None]) -> None:
            error = future.exception()
            if isinstance(error, _EntryFailed) and error.code in _GONE:
                # Deleted already, or received again elsewhere: nothing to do here.
                logger.debug("SQS %s on queue %r skipped: %s", what, message.queue, error)
            elif error is not None:
                # The message comes back when its visibility ends; a finished
                # job's message is then deleted on receipt.
                logger.warning("SQS %s on queue %r failed: %s", what, message.queue, error)

        future.add_done_callback(done)

    async def _send_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self.client.send_message_batch(
            QueueUrl=url, Entries=cast("list[SendMessageBatchRequestEntryTypeDef]", entries)
        )
        return _batch_outcomes(response)

    async def _delete_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self.client.delete_message_batch(
            QueueUrl=url, Entries=cast("list[DeleteMessageBatchRequestEntryTypeDef]", entries)
        )
        return _batch_outcomes(response)

    async def _visibility_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self.client.change_message_visibility_batch(
            QueueUrl=url,
            Entries=cast("list[ChangeMessageVisibilityBatchRequestEntryTypeDef]", entries),
        )
        return _batch_outcomes(response)

    # Other gateways' changes -------------------------------------------------

    async def _sync_loop(self) -> None:
        interval = self._settings.sync_interval.total_seconds()
        while True:
            # Stops between look-ups, never in the middle of one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                await self._sync()
            except GatewayError as error:
                logger.warning("looking up other gateways' changes failed: %s", error)

    async def _sync(self) -> None:
        """Revoke leases of jobs cancelled elsewhere; tell watchers of changes made elsewhere."""
        now = time.time()
        cancelled = await self._records.cancelled_among(list(self._active)) if self._active else []
        if cancelled:
            for record in await self._records.load(cancelled):
                lease = self._active.get(record.id)
                if lease is None:
                    continue
                self._drop(lease)
                error = record.last_error
                text = f"job cancelled: {error.message if error else 'cancelled'}"
                lease.consumer.on_revoke(
                    Revocation(lease.id, record.id, RevokeReason.CANCELLED, text)
                )
                self._delete(lease.message)
                self._publish(record)
        watched = self.events.watched()
        for job_id in [job_id for job_id in self._published if job_id not in watched]:
            del self._published[job_id]
        elsewhere = [job_id for job_id in watched if job_id not in self._active]
        if elsewhere:
            for record in await self._records.load(elsewhere):
                if record.update_time > self._published.get(record.id, 0.0):
                    self._publish(effective(record, now))


__all__ = ["QueueNotConfiguredError", "SqsProvider", "SqsRefusedError", "SqsUnavailableError"]
