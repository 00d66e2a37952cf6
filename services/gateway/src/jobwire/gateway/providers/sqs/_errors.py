"""How SQS failures reach clients: the errors and the statuses they map to."""

from __future__ import annotations

import grpc
from botocore.exceptions import ClientError, NoCredentialsError

from jobwire.gateway._errors import GatewayError, UnavailableError

GONE = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"})
"""Entry errors meaning the receipt is no longer this gateway's: the message
was deleted, or received again elsewhere after its visibility ran out."""
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


class EntryFailed(Exception):
    """SQS refused one entry of a batch call."""

    def __init__(self, code: str, message: str, *, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.sender_fault = sender_fault


def sqs_error(error: BaseException, url: str) -> GatewayError:
    """Translate an SDK failure into the status clients see."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, EntryFailed):
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
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any "
            "values for a local endpoint such as moto or LocalStack), a profile, or a role"
        )
    return SqsUnavailableError(f"SQS endpoint unreachable: {error}; retry later")
