from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest

from jobwire.worker import Backoff, HandlerRegistry, JobContext, Worker


def registry_with(*types: str) -> HandlerRegistry:
    registry = HandlerRegistry()
    for job_type in types:
        registry.register(job_type, lambda ctx: None)
    return registry


def test_defaults() -> None:
    worker = Worker("127.0.0.1:1", registry=registry_with("t"), concurrency=3)
    assert worker.queues == ("default",)
    assert worker.concurrency == 3
    assert worker.max_in_flight == 12
    assert re.fullmatch(rf".+-{os.getpid()}-[0-9a-f]{{6}}", worker.worker_id)
    assert worker.target == "127.0.0.1:1"
    assert not worker.is_running
    assert "Worker id=" in repr(worker)


def test_worker_ids_differ_between_workers_of_one_process() -> None:
    registry = registry_with("t")
    assert Worker("x:1", registry=registry).worker_id != Worker("x:1", registry=registry).worker_id


def test_explicit_settings() -> None:
    worker = Worker(
        "x:1",
        registry=registry_with("t"),
        queues="mail",
        max_in_flight=1,
        worker_id="w-7",
    )
    assert worker.queues == ("mail",)
    assert worker.max_in_flight == 1
    assert worker.worker_id == "w-7"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"queues": ()}, "queues"),
        ({"queues": ("",)}, "queues"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Worker("x:1", registry=registry_with("t"), **kwargs)  # type: ignore[arg-type]


def test_registry_must_be_a_registry() -> None:
    with pytest.raises(TypeError, match="HandlerRegistry"):
        Worker("x:1", registry={"t": lambda ctx: None})  # type: ignore[arg-type]


def test_token_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBWIRE_TOKEN", "from-env")
    registry = registry_with("t")
    assert Worker("x:1", registry=registry)._metadata == (("authorization", "Bearer from-env"),)
    assert Worker("x:1", registry=registry, token="t")._metadata == (("authorization", "Bearer t"),)
    monkeypatch.delenv("JOBWIRE_TOKEN")
    assert Worker("x:1", registry=registry)._metadata == ()


async def test_run_needs_job_types() -> None:
    with pytest.raises(ValueError, match="no handlers"):
        await Worker("x:1", registry=HandlerRegistry()).run()


async def test_job_types_must_have_handlers() -> None:
    worker = Worker("x:1", registry=registry_with("a"), job_types=["a", "b"])
    with pytest.raises(ValueError, match=r"without a handler.*'b'"):
        await worker.run()
    assert not worker.is_running


async def test_shutdown_before_run_does_nothing() -> None:
    await Worker("x:1", registry=registry_with("t")).shutdown()


def test_stop_without_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        Worker("x:1", registry=registry_with("t")).stop()


def test_start_surfaces_configuration_errors() -> None:
    worker = Worker("x:1", registry=HandlerRegistry())
    with pytest.raises(ValueError, match="no handlers"):
        worker.start()


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(
        initial=timedelta(seconds=0.1), maximum=timedelta(seconds=1), multiplier=2, jitter=0.5
    )
    for failures, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (50, 1.0)]:
        delays = [backoff.delay(failures) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert Backoff(jitter=0).delay(0) == 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": timedelta(0)},
        {"initial": timedelta(seconds=2), "maximum": timedelta(seconds=1)},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_invalid_backoff(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


async def _handler(ctx: JobContext) -> None:
    pass
