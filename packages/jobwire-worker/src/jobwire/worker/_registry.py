"""Which handler runs which job type."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from jobwire.worker._errors import DuplicateHandlerError, HandlerNotFoundError, WorkerError

if TYPE_CHECKING:
    from jobwire.worker._context import JobContext

HandlerFunc = Callable[["JobContext"], object]
"""A handler: ``async def`` or plain ``def``, taking the job's context."""

_H = TypeVar("_H", bound=HandlerFunc)

# The gateway's limit on EnqueueJobRequest.type.
_MAX_TYPE_LENGTH = 256


def _is_async(fn: HandlerFunc) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    # The second test catches callable objects whose __call__ is `async def`.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # the method itself, not callable()
    )


@dataclass(frozen=True, slots=True)
class RegisteredHandler:
    """A handler and how the worker calls it."""

    job_type: str
    """Job type the handler runs."""
    fn: HandlerFunc
    """The handler."""
    is_async: bool
    """True for coroutine functions (run on the loop); False for plain
    functions (run in the worker's thread pool)."""


class HandlerRegistry:
    """Maps job types to handlers.

    Example::

        registry = HandlerRegistry()

        @registry.handler("email:send")
        async def send_email(ctx: JobContext) -> dict[str, str]:
            await mailer.send(**ctx.payload)
            return {"status": "sent"}

    A handler takes one argument, the :class:`JobContext`. What it returns
    becomes the job's result: ``bytes`` as is, None as no result, anything
    else encoded by the worker's serializer (JSON by default).
    """

    def __init__(self) -> None:
        self._handlers: dict[str, RegisteredHandler] = {}

    def __repr__(self) -> str:
        return f"<HandlerRegistry types={list(self._handlers)!r}>"

    def handler(self, job_type: str) -> Callable[[_H], _H]:
        """Decorator registering the decorated function for ``job_type``.

        Args:
            job_type: Job type the function handles, e.g. ``"email:send"``.

        Returns:
            A decorator that registers the function and returns it unchanged.

        Raises:
            DuplicateHandlerError: ``job_type`` already has a handler.
        """
        _check_type(job_type)

        def decorate(fn: _H) -> _H:
            return self.register(job_type, fn)

        return decorate

    def register(self, job_type: str, fn: _H) -> _H:
        """Register ``fn`` as the handler of ``job_type``.

        Args:
            job_type: Job type the function handles.
            fn: ``async def`` or plain ``def`` taking a :class:`JobContext`.

        Returns:
            ``fn``, so this also works as a decorator's body.

        Raises:
            DuplicateHandlerError: ``job_type`` already has a handler.
            TypeError: ``fn`` is not a callable, or is a generator function.
            ValueError: ``job_type`` is empty or too long.
        """
        _check_type(job_type)
        if not callable(fn):
            raise TypeError(f"handler for {job_type!r} must be callable, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"handler for {job_type!r} must not be a generator function")
        existing = self._handlers.get(job_type)
        if existing is not None:
            raise DuplicateHandlerError(
                f"job type {job_type!r} already has a handler: {existing.fn!r}"
            )
        self._handlers[job_type] = RegisteredHandler(job_type, fn, _is_async(fn))
        return fn

    def include(self, other: HandlerRegistry) -> None:
        """Register every handler of ``other`` here too (to combine modules' registries).

        Raises:
            DuplicateHandlerError: Both registries handle the same type; nothing
                is registered then.
        """
        clash = self._handlers.keys() & other._handlers.keys()
        if clash:
            raise DuplicateHandlerError(f"job types registered twice: {sorted(clash)}")
        self._handlers.update(other._handlers)

    def get(self, job_type: str) -> RegisteredHandler | None:
        """Return the handler of ``job_type``, or None."""
        return self._handlers.get(job_type)

    def __getitem__(self, job_type: str) -> RegisteredHandler:
        """Return the handler of ``job_type``.

        Raises:
            HandlerNotFoundError: No handler is registered for it.
        """
        try:
            return self._handlers[job_type]
        except KeyError:
            raise HandlerNotFoundError(job_type) from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    @property
    def types(self) -> tuple[str, ...]:
        """Registered job types, in registration order."""
        return tuple(self._handlers)


def _check_type(job_type: str) -> None:
    if not isinstance(job_type, str) or not job_type:
        raise ValueError(f"job type must be a non-empty string, got {job_type!r}")
    if len(job_type) > _MAX_TYPE_LENGTH:
        raise ValueError(f"job type is longer than {_MAX_TYPE_LENGTH} characters")


class TargetError(WorkerError):
    """The ``module:attribute`` target does not name a handler registry."""


def load_registry(target: str) -> HandlerRegistry:
    """Import ``module:attribute`` and return the :class:`HandlerRegistry` it names.

    ``attribute`` may be dotted and defaults to ``registry``. The current
    directory is importable, as with ``python -m``.

    Raises:
        TargetError: The module cannot be imported, the attribute does not
            exist, or it is not a HandlerRegistry.
    """
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "registry"
    if not module_name or not all(part.isidentifier() for part in attribute.split(".")):
        raise TargetError(f"expected MODULE:ATTRIBUTE, got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:
        # The module itself is broken; the traceback is what the user needs.
        raise TargetError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, HandlerRegistry):
        raise TargetError(
            f"{target!r} is not a jobwire.worker.HandlerRegistry (got {type(obj).__name__})"
        )
    return obj
