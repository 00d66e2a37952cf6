"""Random and malformed requests to every RPC, and random frames on worker streams.

One real gateway serves every example. Whatever a client sends, the gateway
answers with a status naming the client's mistake (never UNKNOWN or INTERNAL),
keeps serving, and loses no job it accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobwire.gateway import EmbeddedGateway
from jobwire.gateway.testing import settings_for_tests
from jobwire.v1 import (
    flow_control_pb2,
    job_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
    schedule_service_pb2,
    worker_service_pb2,
)

from support import Request, Response

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: Statuses that would mean the gateway failed, not the client.
SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
CANARY_QUEUE = "fuzz-canary-7f3a"
FILE_DESCRIPTORS = (queue_service_pb2, schedule_service_pb2, health_pb2)
METHODS = [
    method
    for module in FILE_DESCRIPTORS
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    # Health.Watch streams until cancelled by design; worker streams have their own test.
    # PurgeJobs deletes accepted jobs on purpose: it is fuzzed with validate_only.
    if not method.client_streaming
    and method.full_name not in ("grpc.health.v1.Health.Watch", "jobwire.v1.QueueService.PurgeJobs")
]

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
# Protobuf strings must be valid UTF-8: no lone surrogates.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_MAX_DEPTH = 3


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(_TEXT, st.sampled_from(["", "default", "t", "x" * 300]))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    if field.type == FieldDescriptor.TYPE_ENUM:
        # Values no version of the contract defines, as a foreign client may send.
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 1000))
    low, high = _INT_RANGES[field.type]
    return st.one_of(st.integers(low, high), st.integers(-3, 100).filter(lambda n: low <= n))


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with any subset of fields set to any value."""
    cls = message_factory.GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            key, value = nested.fields_by_name["key"], nested.fields_by_name["value"]
            fields[field.name] = st.dictionaries(_scalar(key), _scalar(value), max_size=5)
        elif nested is not None:
            if depth >= _MAX_DEPTH:
                continue
            one = messages(nested, depth + 1)
            repeated = field.is_repeated
            fields[field.name] = st.lists(one, max_size=3) if repeated else one
        elif field.is_repeated:
            fields[field.name] = st.lists(_scalar(field), max_size=5)
        else:
            fields[field.name] = _scalar(field)
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = getattr(message, name)
        if isinstance(value, Message):
            field.CopyFrom(value)
        elif isinstance(value, dict):
            field.update(value)
        elif isinstance(value, list):
            field.extend(value)
        else:
            setattr(message, name, value)
    return message


def payloads(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes on the wire: well-formed messages, garbage, and truncated or spliced messages."""
    wellformed = messages(descriptor).map(lambda m: m.SerializeToString())
    mangled = st.tuples(wellformed, st.binary(max_size=16), st.integers(0, 64)).map(
        lambda parts: parts[0][: parts[2]] + parts[1]
    )
    return st.one_of(wellformed, wellformed, st.binary(max_size=256), mangled)


def expect_client_mistake(error: grpc.RpcError, *, following: bool = False) -> None:
    """Assert ``error`` blames the client; ``following``: a deadline ended a stream we follow."""
    assert isinstance(error, grpc.Call)
    if following and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return
    assert error.code() not in SERVER_FAULTS, f"{error.code()}: {error.details()}"


@pytest.fixture(scope="module")
def gateway() -> Iterator[EmbeddedGateway]:
    settings = settings_for_tests(server={"lease_duration": 5, "min_lease_duration": 1})
    with EmbeddedGateway(settings) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def channel(gateway: EmbeddedGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.address) as chan:
        yield chan


@pytest.fixture(scope="module")
def accepted(channel: grpc.Channel) -> Iterator[dict[str, int]]:
    """Jobs the gateway accepted (id to state at acceptance); none may be lost.

    Starts with canaries in a queue no fuzzed worker asks for, so they must
    still be pending at the end.
    """
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    jobs: dict[str, int] = {}
    for _ in range(5):
        request = queue_service_pb2.EnqueueJobRequest(type="canary", queue=CANARY_QUEUE)
        job = queues.EnqueueJob(request, timeout=5).job
        jobs[job.id] = job.state
    yield jobs
    for job_id in jobs:
        job = queues.GetJob(queue_service_pb2.GetJobRequest(id=job_id), timeout=5).job
        if job.queue == CANARY_QUEUE:
            assert job.state == job_pb2.Job.STATE_PENDING
    # Still serving: health and a fresh enqueue.
    health = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    assert health(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    queues.EnqueueJob(queue_service_pb2.EnqueueJobRequest(type="after-fuzz"), timeout=5)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_random_requests(
    channel: grpc.Channel, accepted: dict[str, int], method: MethodDescriptor
) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_type = message_factory.GetMessageClass(method.output_type)

    @FUZZ
    @given(payloads(method.input_type))
    def fuzz(data: bytes) -> None:
        try:
            if method.server_streaming:
                # WatchJob of a job that exists follows it; a second is enough to see it answer.
                call: grpc.UnaryStreamMultiCallable[bytes, Message] = channel.unary_stream(
                    path, response_deserializer=response_type.FromString
                )
                for _ in call(data, timeout=1):
                    pass
            else:
                call_unary: grpc.UnaryUnaryMultiCallable[bytes, Message] = channel.unary_unary(
                    path, response_deserializer=response_type.FromString
                )
                response = call_unary(data, timeout=10)
                if isinstance(response, queue_service_pb2.EnqueueJobResponse):
                    accepted[response.job.id] = response.job.state
                elif isinstance(response, queue_service_pb2.EnqueueJobsResponse):
                    accepted.update((r.job.id, r.job.state) for r in response.results)
        except grpc.RpcError as error:
            expect_client_mistake(error, following=method.server_streaming)

    fuzz()
    # The worker-frame fuzzing below wants deliveries from the default queue.
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    if method.name == "PauseQueue":
        queues.ResumeQueue(queue_service_pb2.ResumeQueueRequest(queue="default"), timeout=5)
    if method.name == "UpdateQueueConfig":  # no limits, weights or key policies left
        listed = queues.ListQueueConfigs(queue_service_pb2.ListQueueConfigsRequest(), timeout=5)
        for config in listed.configs:
            reset = flow_control_pb2.QueueConfig(queue=config.queue)
            request = queue_service_pb2.UpdateQueueConfigRequest(config=reset)
            queues.UpdateQueueConfig(request, timeout=5)


def test_random_purges_preview_only(channel: grpc.Channel, accepted: dict[str, int]) -> None:
    purge = channel.unary_unary(
        "/jobwire.v1.QueueService/PurgeJobs",
        request_serializer=queue_service_pb2.PurgeJobsRequest.SerializeToString,
        response_deserializer=queue_service_pb2.PurgeJobsResponse.FromString,
    )

    @FUZZ
    @given(messages(queue_service_pb2.PurgeJobsRequest.DESCRIPTOR))
    def fuzz(request: Message) -> None:
        assert isinstance(request, queue_service_pb2.PurgeJobsRequest)
        request.validate_only = True
        try:
            purge(request, timeout=10)
        except grpc.RpcError as error:
            expect_client_mistake(error)

    fuzz()


# A worker's moves after `open`; an int picks a lease delivered so far (or an unknown one).
_LEASE = st.integers(0, 30)
_SPAN = st.builds(
    lambda s, n: duration_pb2.Duration(seconds=s, nanos=n),
    st.integers(-(10**12), 10**12),
    st.integers(-(10**9), 10**9),
)
_MOVES = st.one_of(
    st.tuples(st.just("ack"), st.lists(_LEASE, max_size=4), st.none() | st.binary(max_size=32)),
    st.tuples(st.just("nack"), _LEASE, st.booleans(), st.none() | _SPAN),
    st.tuples(st.just("extend"), st.lists(_LEASE, max_size=4), st.none() | _SPAN),
    st.tuples(st.just("progress"), _LEASE, st.floats()),
    st.tuples(st.just("flow"), st.integers(-5, 2**31 - 1)),
    st.tuples(st.just("drain")),
    st.tuples(st.just("raw"), payloads(worker_service_pb2.StreamJobsRequest.DESCRIPTOR)),
)
_OPENS = st.builds(
    lambda n, queues, lease: Request(
        open=Request.Open(worker_id="fuzz", max_in_flight=n, queues=queues, lease_duration=lease)
    ).SerializeToString(),
    st.integers(-1, 20),
    st.sampled_from([[], ["default"], ["bad queue"]]),
    st.none() | _SPAN,
)


def _frame(move: tuple[Any, ...], leases: list[str]) -> bytes:
    def lease(index: int) -> str:
        return leases[index] if index < len(leases) else f"unknown-{index}"

    kind, *args = move
    if kind == "raw":
        return bytes(args[0])
    if kind == "ack":
        items = [Request.Ack.Item(lease_id=lease(i), result=args[1]) for i in args[0]]
        frame = Request(ack=Request.Ack(items=items))
    elif kind == "nack":
        failure = job_pb2.JobFailure(message="fuzz", type="Fuzz")
        item = Request.Nack.Item(
            lease_id=lease(args[0]), failure=failure, retryable=args[1], retry_delay=args[2]
        )
        frame = Request(nack=Request.Nack(items=[item]))
    elif kind == "extend":
        ids = [lease(i) for i in args[0]]
        frame = Request(extend_lease=Request.ExtendLease(lease_ids=ids, lease_duration=args[1]))
    elif kind == "progress":
        progress = job_pb2.JobProgress(current=args[1], total=args[1] * 2)
        frame = Request(progress=Request.Progress(lease_id=lease(args[0]), progress=progress))
    elif kind == "flow":
        frame = Request(flow=Request.Flow(credits=args[0]))
    else:
        frame = Request(drain=Request.Drain())
    return frame.SerializeToString()


def test_random_worker_frames(channel: grpc.Channel, accepted: dict[str, int]) -> None:
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    batch = queue_service_pb2.EnqueueJobsRequest(
        requests=[queue_service_pb2.EnqueueJobRequest(type="t", max_retries=100)] * 20
    )
    for result in queues.EnqueueJobs(batch, timeout=5).results:
        accepted[result.job.id] = result.job.state
    stream: grpc.StreamStreamMultiCallable[bytes, Response] = channel.stream_stream(
        "/jobwire.v1.WorkerService/StreamJobs",
        response_deserializer=worker_service_pb2.StreamJobsResponse.FromString,
    )

    @FUZZ
    @given(_OPENS, st.lists(_MOVES, max_size=12))
    def fuzz(open_frame: bytes, moves: list[tuple[Any, ...]]) -> None:
        # Leases delivered so far, so moves can name real ones; filled as responses arrive.
        leases: list[str] = []

        def frames() -> Iterator[bytes]:
            yield open_frame
            for move in moves:
                yield _frame(move, leases)

        try:
            # The stream ends once the gateway has read every frame and our half-close.
            for response in stream(frames(), timeout=10):
                leases.extend(item.lease_id for item in response.delivery.items)
        except grpc.RpcError as error:
            expect_client_mistake(error)

    fuzz()
