"""Answer requests that are not valid Protobuf with INVALID_ARGUMENT.

grpcio answers a request its deserializer cannot parse with UNKNOWN (unary
requests) or raises from ``context.read()`` (streams), which the servicers would
log and answer as an internal error. Malformed bytes are the client's mistake:
this interceptor makes every service say so, with an ``ErrorInfo`` like any
other invalid argument.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from jobwire.gateway._errors import InvalidArgumentError

if TYPE_CHECKING:
    # Generic only in the type stubs.
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]

Context = grpc.aio.ServicerContext[Any, Any]
# Far more than the methods served; a generic handler that made a new handler
# per call would only stop being cached, not grow the cache.
_MAX_WRAPPED = 1024


class MalformedRequestError(InvalidArgumentError):
    """The request bytes are not a valid Protobuf message of the method's request type."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, error: DecodeError) -> None:
        super().__init__("request", f"not a valid Protobuf message ({error})")


class _Malformed:
    """Stands for a unary request that failed to parse, so the behaviour can answer it."""

    def __init__(self, error: MalformedRequestError) -> None:
        self.error = error


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Turns Protobuf decoding failures into INVALID_ARGUMENT ``MALFORMED_REQUEST``."""

    def __init__(self) -> None:
        # The server hands out the same handler for every call of a method,
        # so each is wrapped once.
        self._wrapped: dict[Handler, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        """Return the method's handler with a deserializer that fails politely."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = _wrap(handler, handler.request_deserializer)
            if len(self._wrapped) < _MAX_WRAPPED:
                self._wrapped[handler] = wrapped
        return wrapped


def _wrap(handler: Handler, parse: Callable[[bytes], Any]) -> Handler:
    """Return ``handler`` with ``parse``, its deserializer, made to fail politely."""
    serialize = handler.response_serializer
    if handler.request_streaming:
        # Streams read through `context.read()` or the request iterator; the
        # error raised there reaches the servicer's own error mapping.
        def parse_or_raise(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError as error:
                raise MalformedRequestError(error) from None

        behavior: Any
        if handler.response_streaming:
            behavior = handler.stream_stream
            return grpc.stream_stream_rpc_method_handler(behavior, parse_or_raise, serialize)
        behavior = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(behavior, parse_or_raise, serialize)

    def parse_or_mark(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return _Malformed(MalformedRequestError(error))

    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _checked_stream(handler.unary_stream), parse_or_mark, serialize
        )
    return grpc.unary_unary_rpc_method_handler(
        _checked_unary(handler.unary_unary), parse_or_mark, serialize
    )


def _checked_unary(behavior: Any) -> Any:
    async def checked(request: Any, context: Context) -> Any:
        if isinstance(request, _Malformed):
            await context.abort_with_status(request.error.to_status())
        return await behavior(request, context)

    return checked


def _checked_stream(behavior: Any) -> Any:
    if not inspect.isasyncgenfunction(behavior):
        # A coroutine that writes with `context.write()`.
        return _checked_unary(behavior)

    async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, _Malformed):
            await context.abort_with_status(request.error.to_status())
        async for response in behavior(request, context):
            yield response

    return checked
