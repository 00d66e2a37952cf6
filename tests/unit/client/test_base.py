from __future__ import annotations

import json
from datetime import timedelta

import pytest

from jobwire.client import Client, JobState, RetryConfig, TLSConfig
from jobwire.client._base import MAX_BATCH, MAX_BATCH_BYTES, BaseClient, batches
from jobwire.v1 import job_pb2


def test_batches_respect_count_and_order() -> None:
    sizes = [batch for batch in batches(range(2500), lambda _: 1)]
    assert [len(batch) for batch in sizes] == [MAX_BATCH, MAX_BATCH, 500]
    assert [item for batch in sizes for item in batch] == list(range(2500))


def test_batches_respect_bytes() -> None:
    third = MAX_BATCH_BYTES // 3
    result = list(batches([third, third, third, third, 5 * MAX_BATCH_BYTES, 1], lambda n: n))
    assert [len(batch) for batch in result] == [3, 1, 1, 1]


def test_batches_of_nothing() -> None:
    assert list(batches([], lambda _: 1)) == []


def test_list_request_filters() -> None:
    request = BaseClient._list_request(
        queue="q", type="t", state=JobState.DEAD, page_size=10, page_token="tok"
    )
    assert request.queue == "q"
    assert request.type == "t"
    assert list(request.states) == [job_pb2.Job.STATE_DEAD]
    assert request.page_size == 10
    assert request.page_token == "tok"


def test_list_request_many_states_and_none() -> None:
    many = BaseClient._list_request(
        queue=None,
        type=None,
        state=[JobState.PENDING, JobState.FAILED],
        page_size=100,
        page_token=None,
    )
    assert list(many.states) == [job_pb2.Job.STATE_PENDING, job_pb2.Job.STATE_FAILED]
    assert many.queue == many.type == many.page_token == ""
    none = BaseClient._list_request(
        queue=None, type=None, state=None, page_size=100, page_token=None
    )
    assert list(none.states) == []


def test_retry_service_config() -> None:
    config = json.loads(
        RetryConfig(
            max_attempts=4,
            initial_backoff=timedelta(milliseconds=50),
            max_backoff=timedelta(seconds=1),
            multiplier=1.5,
        ).service_config()
    )
    method, stream = config["methodConfig"]
    assert method["name"] == [
        {"service": "jobwire.v1.QueueService"},
        {"service": "jobwire.v1.ScheduleService"},
    ]
    assert method["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.050000s",
        "maxBackoff": "1.000000s",
        "backoffMultiplier": 1.5,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    # The enqueue stream retries its own frames: its entry, more specific, has no policy.
    assert stream == {"name": [{"service": "jobwire.v1.QueueService", "method": "EnqueueStream"}]}


def test_single_attempt_has_no_retry_policy() -> None:
    methods = json.loads(RetryConfig(max_attempts=1).service_config())["methodConfig"]
    assert all("retryPolicy" not in method for method in methods)
    with pytest.raises(ValueError, match="at least 1"):
        RetryConfig(max_attempts=0)


def test_tls_needs_cert_and_key_together() -> None:
    with pytest.raises(ValueError, match="both"):
        TLSConfig(cert="client.pem")


def test_token_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBWIRE_TOKEN", "from-env")
    with Client() as client:
        assert client._metadata == (("authorization", "Bearer from-env"),)
    with Client(token="explicit") as client:
        assert client._metadata == (("authorization", "Bearer explicit"),)
    monkeypatch.delenv("JOBWIRE_TOKEN")
    with Client() as client:
        assert client._metadata == ()


def test_closed_client_refuses_calls() -> None:
    client = Client()
    client.close()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.get_job("j1")


def test_tls_client_builds_a_secure_channel() -> None:
    with Client("gateway.example:443", tls=TLSConfig(server_name="jobwire.internal")) as client:
        assert ("grpc.ssl_target_name_override", "jobwire.internal") in client._channel_options


def test_address_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBWIRE_GATEWAY", "gateway.internal:7000")
    with Client() as client:
        assert client.address == "gateway.internal:7000"
    monkeypatch.delenv("JOBWIRE_GATEWAY")
    with Client() as client:
        assert client.address == "127.0.0.1:50051"
    with Client("10.0.0.1:1") as client:
        assert client.address == "10.0.0.1:1"
