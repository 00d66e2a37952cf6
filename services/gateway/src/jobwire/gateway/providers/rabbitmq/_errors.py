"""How broker failures reach clients: the errors and the statuses they map to."""

from __future__ import annotations

import grpc

from jobwire.gateway._errors import GatewayError, UnavailableError


class BrokerUnavailableError(UnavailableError):
    """RabbitMQ cannot be reached, or did not confirm a message; retry later."""

    reason = "PROVIDER_UNAVAILABLE"


class BrokerRefusedError(GatewayError):
    """RabbitMQ refused the request because of its or the gateway's configuration."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "PROVIDER_FAILED_PRECONDITION"


class QueueMissingError(BrokerRefusedError):
    """A queue or exchange jobwire needs does not exist (and ``declare`` is false)."""

    reason = "QUEUE_NOT_FOUND"
