"""SDK failures become the statuses clients see: retry later, or fix the configuration."""

from __future__ import annotations

import grpc
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from jobwire.gateway.providers.sqs._errors import sqs_error as _sqs_error

URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"


def client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendMessageBatch")  # type: ignore[arg-type]  # test double


@pytest.mark.parametrize(
    ("error", "code", "reason", "words"),
    [
        (client_error("ThrottlingException"), "UNAVAILABLE", "PROVIDER_UNAVAILABLE", "throttling"),
        (client_error("InternalError", 500), "UNAVAILABLE", "PROVIDER_UNAVAILABLE", "retry later"),
        (
            EndpointConnectionError(endpoint_url=URL),
            "UNAVAILABLE",
            "PROVIDER_UNAVAILABLE",
            "unreachable",
        ),
        (
            client_error("AWS.SimpleQueueService.NonExistentQueue"),
            "FAILED_PRECONDITION",
            "QUEUE_NOT_FOUND",
            "does not exist",
        ),
        (
            client_error("AccessDenied", 403),
            "FAILED_PRECONDITION",
            "PROVIDER_FAILED_PRECONDITION",
            "AccessDenied",
        ),
        (
            NoCredentialsError(),
            "FAILED_PRECONDITION",
            "PROVIDER_FAILED_PRECONDITION",
            "credentials",
        ),
    ],
)
def test_sdk_errors_map_to_statuses(error: Exception, code: str, reason: str, words: str) -> None:
    mapped = _sqs_error(error, URL)
    assert mapped.code == getattr(grpc.StatusCode, code)
    assert mapped.reason == reason
    assert words in mapped.message
