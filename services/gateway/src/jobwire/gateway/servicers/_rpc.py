"""Turning gateway errors into gRPC statuses, once for every servicer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from jobwire.gateway._errors import GatewayError

logger = logging.getLogger("jobwire.gateway")

Context = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S")
#: What a caller is told of a bug in the gateway (the log has the traceback).
INTERNAL_MESSAGE = "internal error in the gateway; see its logs"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


async def abort(context: Context, error: BaseException) -> NoReturn:
    """End the RPC with the status matching ``error``.

    A :class:`GatewayError` is the client's doing and keeps its code and
    reason; anything else is a bug in the gateway, logged with its traceback
    and answered with INTERNAL.
    """
    if isinstance(error, GatewayError):
        await context.abort_with_status(error.to_status())
    logger.error("unexpected error in %s", context.peer(), exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def unary(
    method: Callable[[_S, _Req, Context], Awaitable[_Resp]],
) -> Callable[[_S, _Req, Context], Awaitable[_Resp]]:
    """Map exceptions of a unary RPC method to gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: _S, request: _Req, context: Context) -> _Resp:
        try:
            return await method(self, request, context)
        except Exception as error:
            await abort(context, error)

    return wrapper
