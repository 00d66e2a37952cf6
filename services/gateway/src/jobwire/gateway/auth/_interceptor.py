"""Bearer-token authentication with roles: the server interceptor.

The gateway keeps only the SHA-256 of each token, so its configuration and
environment hold nothing a caller could present. Tokens are meant to be long
random strings (``python -m jobwire.gateway.auth --generate``): a fast
unsalted hash is then as strong as a slow one, and cheap on every call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from jobwire.gateway._config import AuthSettings, Role
from jobwire.gateway._errors import GatewayError, PermissionDeniedError, UnauthenticatedError

#: Open to everyone: load balancers and orchestrators probe health without a token.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
#: Any valid token may list the API; it reveals the schema, never data.
ANY_ROLE_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
#: Roles allowed on each jobwire service; a service missing here is admin-only.
SERVICE_ROLES: dict[str, frozenset[Role]] = {
    "jobwire.v1.QueueService": frozenset({"producer", "admin"}),
    "jobwire.v1.ScheduleService": frozenset({"producer", "admin"}),
    "jobwire.v1.WorkerService": frozenset({"worker", "admin"}),
}
_ADMIN_ONLY: frozenset[Role] = frozenset({"admin"})
#: Methods whose roles differ from their service's: operators' mutations.
METHOD_ROLES: dict[str, frozenset[Role]] = {
    **{
        f"/jobwire.v1.QueueService/{name}": _ADMIN_ONLY
        for name in (
            "RetryJob",
            "RetryJobs",
            "PurgeJobs",
            "PauseQueue",
            "ResumeQueue",
            "UpdateQueueConfig",
        )
    },
    "/jobwire.v1.WorkerService/ListWorkers": frozenset({"producer", "admin"}),
    "/jobwire.v1.WorkerService/DrainWorker": _ADMIN_ONLY,
}
_BEARER = "bearer "

if TYPE_CHECKING:
    # Generic only in the type stubs.
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


def hash_token(token: str) -> str:
    """Return the lowercase hex SHA-256 of ``token``, as ``[server.auth]`` expects it."""
    return hashlib.sha256(token.encode()).hexdigest()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token and its role before any servicer runs.

    Args:
        settings: The ``[server.auth]`` table; its tokens' hashes are accepted.
        worker_token: A token the gateway made for its own in-process worker,
            accepted with the ``worker`` role for this process's lifetime.
        dashboard_token: Likewise for its in-process dashboard, with the ``admin`` role.
    """

    def __init__(
        self,
        settings: AuthSettings,
        worker_token: str | None = None,
        dashboard_token: str | None = None,
    ) -> None:
        self._tokens: list[tuple[bytes, Role]] = [
            (bytes.fromhex(token.sha256.get_secret_value()), token.role)
            for token in settings.tokens
        ]
        if worker_token is not None:
            self._tokens.append((hashlib.sha256(worker_token.encode()).digest(), "worker"))
        if dashboard_token is not None:
            self._tokens.append((hashlib.sha256(dashboard_token.encode()).digest(), "admin"))

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        """Let the call through, or answer it with UNAUTHENTICATED or PERMISSION_DENIED."""
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.strip("/").partition("/")[0]
        if handler is None or service in OPEN_SERVICES:
            return handler
        role = self._role(handler_call_details.invocation_metadata or ())
        if role is None:
            return _refusal(
                handler, UnauthenticatedError("a valid `authorization: Bearer <token>` is required")
            )
        if service in ANY_ROLE_SERVICES:
            return handler
        method = handler_call_details.method
        allowed = METHOD_ROLES.get(method) or SERVICE_ROLES.get(service, _ADMIN_ONLY)
        if role in allowed:
            return handler
        name = method.strip("/").replace("/", ".") if method in METHOD_ROLES else service
        return _refusal(
            handler,
            PermissionDeniedError(f"role {role!r} may not call {name}", role=role),
        )

    def _role(self, metadata: Sequence[tuple[str, str | bytes]]) -> Role | None:
        """The role of the presented token, or None when it is missing or unknown."""
        value = next((v for k, v in metadata if k == "authorization"), None)
        if not isinstance(value, str) or not value.lower().startswith(_BEARER):
            return None
        digest = hashlib.sha256(value[len(_BEARER) :].strip().encode()).digest()
        role: Role | None = None
        # Compare with every token, in constant time, so neither the position
        # of a match nor a matching prefix shows in the response time.
        for expected, token_role in self._tokens:
            if hmac.compare_digest(digest, expected):
                role = token_role
        return role


def _refusal(handler: Handler, error: GatewayError) -> Handler:
    """A handler of the same shape as ``handler`` that only answers ``error``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort_with_status(error.to_status())

    # Requests are never read, so no deserializer runs on an unauthenticated caller's bytes.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
