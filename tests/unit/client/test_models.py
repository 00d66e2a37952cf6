from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from jobwire.client import (
    Client,
    InvalidArgumentError,
    Job,
    JobFailure,
    JobPage,
    JobProgress,
    JobRequest,
    JobState,
    JsonSerializer,
    QueueStats,
    RawSerializer,
)
from jobwire.v1 import job_pb2, queue_service_pb2

T0 = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _dur(seconds: float) -> duration_pb2.Duration:
    span = duration_pb2.Duration()
    span.FromTimedelta(timedelta(seconds=seconds))
    return span


def full_proto() -> job_pb2.Job:
    return job_pb2.Job(
        id="j1",
        queue="emails",
        type="email:send",
        payload=b'{"to":"ada@example.com"}',
        content_type="application/json",
        attributes={"tenant": "acme"},
        state=job_pb2.Job.STATE_DEAD,
        attempt=4,
        max_retries=3,
        timeout=_dur(30),
        deduplication_key="k1",
        create_time=_ts(T0),
        schedule_time=_ts(T0 + timedelta(minutes=1)),
        update_time=_ts(T0 + timedelta(minutes=2)),
        end_time=_ts(T0 + timedelta(minutes=3)),
        last_error=job_pb2.JobFailure(
            message="smtp down", type="ConnectionError", retryable=True, attempt=4, time=_ts(T0)
        ),
        result=b'{"sent":false}',
        progress=job_pb2.JobProgress(current=3, total=4, message="three of four"),
        worker_id="w1",
        schedule="nightly",
    )


def test_job_from_full_proto() -> None:
    job = Job.from_proto(full_proto())
    assert job.id == "j1"
    assert job.queue == "emails"
    assert job.type == "email:send"
    assert job.state is JobState.DEAD
    assert job.attempt == 4
    assert job.max_retries == 3
    assert job.timeout == timedelta(seconds=30)
    assert job.deduplication_key == "k1"
    assert job.attributes == {"tenant": "acme"}
    assert job.payload == {"to": "ada@example.com"}
    assert job.raw_payload == b'{"to":"ada@example.com"}'
    assert job.result == {"sent": False}
    assert job.create_time == T0
    assert job.create_time is not None
    assert job.create_time.tzinfo is UTC
    assert job.schedule_time == T0 + timedelta(minutes=1)
    assert job.update_time == T0 + timedelta(minutes=2)
    assert job.end_time == T0 + timedelta(minutes=3)
    assert job.last_error == JobFailure(
        message="smtp down", type="ConnectionError", retryable=True, attempt=4, time=T0
    )
    assert job.progress == JobProgress(current=3, total=4, message="three of four")
    assert job.progress.fraction == 0.75
    assert job.worker_id == "w1"
    assert job.schedule == "nightly"


def test_job_from_minimal_proto_uses_none_for_unset_fields() -> None:
    job = Job.from_proto(job_pb2.Job(id="j2", type="t", state=job_pb2.Job.STATE_PENDING))
    assert job.timeout is None
    assert job.deduplication_key is None
    assert job.create_time is None
    assert job.end_time is None
    assert job.last_error is None
    assert job.progress is None
    assert job.raw_result is None
    assert job.result is None
    assert job.worker_id is None
    assert job.schedule is None


def test_empty_result_is_distinct_from_no_result() -> None:
    proto = job_pb2.Job(id="j", type="t", state=job_pb2.Job.STATE_COMPLETED, result=b"")
    assert Job.from_proto(proto).raw_result == b""


def test_payload_of_another_content_type_stays_bytes() -> None:
    proto = job_pb2.Job(
        id="j",
        type="t",
        state=job_pb2.Job.STATE_PENDING,
        payload=b"\x89PNG",
        content_type="image/png",
        result=b"ok",
    )
    job = Job.from_proto(proto)
    assert job.payload == b"\x89PNG"
    assert job.result == b"ok"


def test_result_is_decoded_with_its_own_content_type() -> None:
    proto = job_pb2.Job(
        id="j",
        type="t",
        state=job_pb2.Job.STATE_COMPLETED,
        payload=b"\x89PNG",
        content_type="image/png",
        result=b'{"width": 3}',
        result_content_type="application/json",
    )
    assert Job.from_proto(proto).result == {"width": 3}


def test_payload_decoded_with_the_given_serializer() -> None:
    proto = job_pb2.Job(
        id="j",
        type="t",
        state=job_pb2.Job.STATE_PENDING,
        payload=b"\x00",
        content_type="application/octet-stream",
    )
    assert Job.from_proto(proto, serializer=RawSerializer()).payload == b"\x00"


def test_job_repr_is_short() -> None:
    job = Job.from_proto(full_proto())
    assert repr(job) == "Job(id='j1', type='email:send', queue='emails', state=dead, attempt=4)"


def test_jobs_compare_by_data_not_by_client() -> None:
    class Waiter:
        def wait(self, job_or_id: Job | str, *, timeout: float | timedelta | None = None) -> Any:
            return ("waited", job_or_id, timeout)

    bound = Job.from_proto(full_proto(), client=Waiter())
    assert bound == Job.from_proto(full_proto())
    assert hash(bound) == hash(Job.from_proto(full_proto()))


def test_job_wait_delegates_to_its_client() -> None:
    class Waiter:
        def wait(self, job_or_id: Job | str, *, timeout: float | timedelta | None = None) -> Any:
            return ("waited", job_or_id, timeout)

    job = Job.from_proto(full_proto(), client=Waiter())
    assert job.wait(timeout=3) == ("waited", job, 3)


def test_job_wait_without_client() -> None:
    with pytest.raises(RuntimeError, match=r"client\.wait"):
        Job.from_proto(full_proto()).wait()


@pytest.mark.parametrize("state", list(JobState))
def test_job_state_round_trips_through_proto(state: JobState) -> None:
    assert JobState.from_proto(state.to_proto()) is state
    assert job_pb2.Job.State.Name(state.to_proto()) == f"STATE_{state.value.upper()}"


def test_job_state_unspecified_is_rejected() -> None:
    with pytest.raises(ValueError, match="UNSPECIFIED"):
        JobState.from_proto(job_pb2.Job.STATE_UNSPECIFIED)


def test_job_state_terminal() -> None:
    terminal = {state for state in JobState if state.is_terminal}
    assert terminal == {JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED}
    assert JobState("pending") is JobState.PENDING
    assert isinstance(JobState.PENDING, str)
    assert str(JobState.PENDING) == "pending"


def test_queue_stats_from_proto() -> None:
    proto = queue_service_pb2.QueueStats(
        queue="q",
        pending=1,
        scheduled=2,
        processing=3,
        completed=4,
        failed=5,
        dead=6,
        cancelled=7,
        oldest_pending_age=_dur(1.5),
        workers=2,
    )
    assert QueueStats.from_proto(proto) == QueueStats(
        queue="q",
        pending=1,
        scheduled=2,
        processing=3,
        completed=4,
        failed=5,
        dead=6,
        cancelled=7,
        oldest_pending_age=timedelta(seconds=1.5),
        workers=2,
    )


def test_progress_without_total() -> None:
    assert JobProgress(current=3).fraction is None


def test_job_page_is_a_sequence() -> None:
    jobs = tuple(Job(id=str(n), type="t") for n in range(3))
    page = JobPage(jobs, next_page_token="next")
    assert len(page) == 3
    assert page[0].id == "0"
    assert [job.id for job in page[1:]] == ["1", "2"]
    assert list(page) == list(jobs)
    assert jobs[2] in page
    assert repr(page) == "JobPage(3 jobs: 3 pending, next_page_token='next')"


class TestJobRequest:
    serializer = JsonSerializer()

    def test_defaults(self) -> None:
        proto = JobRequest("email:send").to_proto(self.serializer, "rid")
        assert proto.type == "email:send"
        assert proto.queue == "default"
        assert proto.payload == b"null"
        assert proto.content_type == "application/json"
        assert proto.request_id == "rid"
        assert proto.WhichOneof("when") is None
        assert not proto.HasField("max_retries")
        assert not proto.HasField("timeout")
        assert proto.deduplication_key == ""

    def test_every_option(self) -> None:
        request = JobRequest(
            "resize",
            {"w": 10},
            queue="images",
            delay=1.5,
            max_retries=0,
            timeout=timedelta(minutes=2),
            deduplication_key="img-1",
            attributes={"trace": "abc"},
            content_type="application/vnd.acme+json",
        )
        proto = request.to_proto(self.serializer, "rid")
        assert proto.queue == "images"
        assert proto.payload == b'{"w":10}'
        assert proto.content_type == "application/vnd.acme+json"
        assert proto.delay.ToTimedelta() == timedelta(seconds=1.5)
        assert proto.HasField("max_retries")
        assert proto.max_retries == 0
        assert proto.timeout.ToTimedelta() == timedelta(minutes=2)
        assert proto.deduplication_key == "img-1"
        assert dict(proto.attributes) == {"trace": "abc"}

    def test_delay_as_timedelta(self) -> None:
        proto = JobRequest("t", delay=timedelta(hours=1)).to_proto(self.serializer, "rid")
        assert proto.delay.seconds == 3600

    def test_at_is_sent_as_schedule_time_in_utc(self) -> None:
        at = datetime(2030, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
        proto = JobRequest("t", at=at).to_proto(self.serializer, "rid")
        assert proto.WhichOneof("when") == "schedule_time"
        assert proto.schedule_time.ToDatetime(tzinfo=UTC) == datetime(2030, 1, 1, 7, tzinfo=UTC)

    def test_naive_at_is_rejected(self) -> None:
        with pytest.raises(InvalidArgumentError, match="timezone-aware") as caught:
            JobRequest("t", at=datetime(2030, 1, 1))  # noqa: DTZ001
        assert caught.value.metadata == {"field": "at"}
        assert isinstance(caught.value, ValueError)

    def test_delay_and_at_are_exclusive(self) -> None:
        with pytest.raises(InvalidArgumentError, match="not both"):
            JobRequest("t", delay=1, at=T0)

    def test_bytes_payload(self) -> None:
        proto = JobRequest("t", b"\x00\x01").to_proto(self.serializer, "rid")
        assert proto.payload == b"\x00\x01"
        assert proto.content_type == "application/octet-stream"


def test_bound_jobs_copy_and_pickle_without_their_client() -> None:
    with Client() as client:
        job = Job.from_proto(full_proto(), client=client)
        assert copy.deepcopy(job) == job
        assert dataclasses.asdict(job)["id"] == "j1"
        restored = pickle.loads(pickle.dumps(job))
    assert restored == job
    assert restored.payload == {"to": "ada@example.com"}
    with pytest.raises(RuntimeError, match="not returned by a client"):
        restored.wait()
