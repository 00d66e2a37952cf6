from __future__ import annotations

import functools

import pytest

from jobwire.worker import (
    DuplicateHandlerError,
    HandlerNotFoundError,
    HandlerRegistry,
    JobContext,
)


def test_decorator_registers_async_and_sync_handlers() -> None:
    registry = HandlerRegistry()

    @registry.handler("email:send")
    async def send(ctx: JobContext) -> str:
        return "sent"

    @registry.handler("image:resize")
    def resize(ctx: JobContext) -> None:
        return None

    assert registry.types == ("email:send", "image:resize")
    assert "email:send" in registry
    assert len(registry) == 2
    assert list(registry) == ["email:send", "image:resize"]
    async_handler = registry["email:send"]
    assert async_handler.fn is send
    assert async_handler.is_async
    sync_handler = registry.get("image:resize")
    assert sync_handler is not None
    assert sync_handler.fn is resize
    assert not sync_handler.is_async


def test_decorator_returns_the_function_unchanged() -> None:
    registry = HandlerRegistry()

    async def handler(ctx: JobContext) -> None:
        pass

    assert registry.handler("t")(handler) is handler
    assert registry.register("u", handler) is handler


def test_register_detects_async_callables_and_partials() -> None:
    registry = HandlerRegistry()

    class AsyncCallable:
        async def __call__(self, ctx: JobContext) -> None:
            pass

    class SyncCallable:
        def __call__(self, ctx: JobContext) -> None:
            pass

    async def with_option(ctx: JobContext, *, option: int) -> int:
        return option

    registry.register("a", AsyncCallable())
    registry.register("b", SyncCallable())
    registry.register("c", functools.partial(with_option, option=1))
    assert registry["a"].is_async
    assert not registry["b"].is_async
    assert registry["c"].is_async


def test_duplicate_type_is_an_error() -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    with pytest.raises(DuplicateHandlerError, match="'t' already has a handler"):
        registry.register("t", lambda ctx: None)
    with pytest.raises(ValueError, match="already has a handler"):

        @registry.handler("t")
        def again(ctx: JobContext) -> None:
            pass


def test_lookup_of_unknown_type() -> None:
    registry = HandlerRegistry()
    assert registry.get("missing") is None
    assert "missing" not in registry
    with pytest.raises(HandlerNotFoundError, match="'missing'") as raised:
        registry["missing"]
    assert raised.value.job_type == "missing"


@pytest.mark.parametrize("job_type", ["", "x" * 257])
def test_invalid_job_types_are_rejected(job_type: str) -> None:
    with pytest.raises(ValueError, match="job type"):
        HandlerRegistry().handler(job_type)


def test_non_callables_and_generators_are_rejected() -> None:
    registry = HandlerRegistry()

    def gen(ctx: JobContext):  # type: ignore[no-untyped-def]
        yield 1

    async def agen(ctx: JobContext):  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match="callable"):
        registry.register("a", "not a function")  # type: ignore[type-var]
    with pytest.raises(TypeError, match="generator"):
        registry.register("b", gen)
    with pytest.raises(TypeError, match="generator"):
        registry.register("c", agen)
    assert len(registry) == 0


def test_include_combines_registries() -> None:
    emails, images, clash = HandlerRegistry(), HandlerRegistry(), HandlerRegistry()
    emails.register("email:send", lambda ctx: None)
    images.register("image:resize", lambda ctx: None)
    clash.register("email:send", lambda ctx: None)
    emails.include(images)
    assert emails.types == ("email:send", "image:resize")
    with pytest.raises(DuplicateHandlerError, match="email:send"):
        emails.include(clash)
    assert repr(emails) == "<HandlerRegistry types=['email:send', 'image:resize']>"
