"""Bearer tokens with roles: who may call what, and what the others are told."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from pydantic import ValidationError

from jobwire.client import AsyncClient, PermissionDeniedError, UnauthenticatedError
from jobwire.gateway import Gateway
from jobwire.gateway.auth import hash_token
from jobwire.gateway.testing import settings_for_tests
from jobwire.v1 import (
    queue_service_pb2,
    queue_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from jobwire.worker import ConnectionFailedError, HandlerRegistry, Worker

from conftest import GatewayFactory
from support import Request

TOKENS = {"producer": "p-secret-token", "worker": "w-secret-token", "admin": "a-secret-token"}
AUTH = {
    "auth": {
        "enabled": True,
        "tokens": [{"role": role, "sha256": hash_token(token)} for role, token in TOKENS.items()],
    }
}


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(server=AUTH)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is call-like
    assert status is not None, "rich status details missing"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def expect_refused(call: Any, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert reason_of(caught.value) == code.name


async def stream_jobs(channel: grpc.aio.Channel, metadata: Any) -> None:
    """Open a worker stream and read its first answer (``opened``)."""
    call = worker_service_pb2_grpc.WorkerServiceStub(channel).StreamJobs(metadata=metadata)
    await call.write(Request(open=Request.Open(worker_id="w", max_in_flight=1)))
    await call.read()


async def refused_stream(channel: grpc.aio.Channel, metadata: Any) -> None:
    """Open a worker stream the gateway refuses on its metadata, and read the refusal.

    No frame is written: grpc.aio reports a write that fails after the server
    ended the call as INTERNAL "Internal error from Core", overwriting the
    server's status (grpc/grpc#36066), so a test that writes sees that by chance.
    """
    call = worker_service_pb2_grpc.WorkerServiceStub(channel).StreamJobs(metadata=metadata)
    await call.read()


@pytest.mark.parametrize(
    "metadata",
    [(), bearer("wrong"), bearer(""), (("authorization", TOKENS["admin"]),)],
    ids=["missing", "wrong", "empty", "not-bearer"],
)
async def test_every_service_refuses_a_missing_or_invalid_token(
    gateway: Gateway, metadata: Any
) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        schedules = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        request = queue_service_pb2.EnqueueJobRequest(type="t")
        await expect_refused(queues.EnqueueJob(request, metadata=metadata), unauthenticated)
        watch = queues.WatchJob(queue_service_pb2.WatchJobRequest(id="x"), metadata=metadata)
        await expect_refused(watch.read(), unauthenticated)
        listing = schedule_service_pb2.ListSchedulesRequest()
        await expect_refused(schedules.ListSchedules(listing, metadata=metadata), unauthenticated)
        await expect_refused(refused_stream(channel, metadata), unauthenticated)


async def test_roles_reach_only_their_services(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        request = queue_service_pb2.EnqueueJobRequest(type="t")
        denied = grpc.StatusCode.PERMISSION_DENIED
        await expect_refused(queues.EnqueueJob(request, metadata=bearer(TOKENS["worker"])), denied)
        await expect_refused(refused_stream(channel, bearer(TOKENS["producer"])), denied)
        for role in ("producer", "admin"):
            await queues.EnqueueJob(request, metadata=bearer(TOKENS[role]))
        for role in ("worker", "admin"):
            await stream_jobs(channel, bearer(TOKENS[role]))


async def test_operators_rpcs_need_the_admin_role_except_list_workers(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        denied = grpc.StatusCode.PERMISSION_DENIED
        pause = queue_service_pb2.PauseQueueRequest(queue="q")
        purge = queue_service_pb2.PurgeJobsRequest(all=True, validate_only=True)
        drain = worker_service_pb2.DrainWorkerRequest(worker_id="nobody")
        for role in ("producer", "worker"):
            metadata = bearer(TOKENS[role])
            await expect_refused(queues.PauseQueue(pause, metadata=metadata), denied)
            await expect_refused(queues.PurgeJobs(purge, metadata=metadata), denied)
            retry = queue_service_pb2.RetryJobsRequest()
            await expect_refused(queues.RetryJobs(retry, metadata=metadata), denied)
            await expect_refused(workers.DrainWorker(drain, metadata=metadata), denied)
        listing = worker_service_pb2.ListWorkersRequest()
        await expect_refused(
            workers.ListWorkers(listing, metadata=bearer(TOKENS["worker"])), denied
        )
        admin = bearer(TOKENS["admin"])
        assert (await queues.PauseQueue(pause, metadata=admin)).stats.paused
        assert (await queues.PurgeJobs(purge, metadata=admin)).count == 0
        for role in ("producer", "admin"):
            await workers.ListWorkers(listing, metadata=bearer(TOKENS[role]))


async def test_health_is_open_and_reflection_needs_a_token(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        await expect_refused(
            stub.ServerReflectionInfo(iter([request])).read(), grpc.StatusCode.UNAUTHENTICATED
        )
        call = stub.ServerReflectionInfo(iter([request]), metadata=bearer(TOKENS["worker"]))
        answer = await call.read()
        names = {s.name for s in answer.list_services_response.service}
        assert "jobwire.v1.QueueService" in names


async def test_sdks_authenticate_with_argument_or_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = asyncio.Event()
    registry = HandlerRegistry()
    registry.register("t", lambda payload: done.set())
    monkeypatch.setenv("JOBWIRE_TOKEN", TOKENS["producer"])
    async with AsyncClient(gateway.address) as client:
        job = await client.enqueue("t", {"n": 1})
    async with Worker(gateway.address, registry=registry, token=TOKENS["worker"]):
        await asyncio.wait_for(done.wait(), 10)
    async with AsyncClient(gateway.address, token=TOKENS["admin"]) as admin:
        assert (await admin.get_job(job.id)).id == job.id


async def test_sdks_raise_typed_errors(gateway: Gateway) -> None:
    async with AsyncClient(gateway.address, token="wrong") as client:
        with pytest.raises(UnauthenticatedError):
            await client.enqueue("t", {})
    async with AsyncClient(gateway.address, token=TOKENS["worker"]) as client:
        with pytest.raises(PermissionDeniedError):
            await client.enqueue("t", {})
    registry = HandlerRegistry()
    registry.register("t", lambda payload: None)
    worker = Worker(gateway.address, registry=registry, token=TOKENS["producer"])
    with pytest.raises(ConnectionFailedError) as raised:
        await asyncio.wait_for(worker.run(), 10)
    assert raised.value.code == "PERMISSION_DENIED"


async def test_in_process_worker_authenticates_itself(gateway_factory: GatewayFactory) -> None:
    in_process = {"mode": "in-process", "handlers": ["integration.gateway.inprocess_jobs:registry"]}
    gateway = await gateway_factory(server=AUTH, worker=in_process)
    async with AsyncClient(gateway.address, token=TOKENS["producer"]) as client:
        job = await client.enqueue("add", {"a": 2, "b": 3})
        assert await job.wait(timeout=10) == 5


def test_in_process_worker_cannot_use_tls() -> None:
    with pytest.raises(ValidationError, match="in-process"):
        settings_for_tests(
            server={"tls": {"cert": "c.pem", "key": "k.pem"}},
            worker={"mode": "in-process", "handlers": ["m:registry"]},
        )
