from __future__ import annotations

import json
import logging
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jobwire.worker import HandlerRegistry, TargetError, load_registry
from jobwire.worker._cli import EXIT_USAGE, json_formatter, main

MakeModule = Callable[[str], str]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeModule:
    """Write a uniquely named importable module; return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str) -> str:
        name = f"cli_target_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return make


REGISTRY_SOURCE = """
    from jobwire.worker import HandlerRegistry

    registry = HandlerRegistry()
    not_a_registry = {"a": 1}

    class Nested:
        jobs = registry

    @registry.handler("t")
    async def handle(ctx):
        return None
"""


def test_resolves_module_attribute(make_module: MakeModule) -> None:
    name = make_module(REGISTRY_SOURCE)
    registry = load_registry(f"{name}:registry")
    assert isinstance(registry, HandlerRegistry)
    assert registry.types == ("t",)
    assert load_registry(f"{name}:Nested.jobs") is registry
    assert load_registry(name) is registry  # attribute defaults to `registry`


def test_missing_module(make_module: MakeModule) -> None:
    with pytest.raises(TargetError, match="cannot import module 'no_such_module_xyz'"):
        load_registry("no_such_module_xyz:registry")


def test_missing_attribute(make_module: MakeModule) -> None:
    name = make_module(REGISTRY_SOURCE)
    with pytest.raises(TargetError, match="has no attribute 'jobs'"):
        load_registry(f"{name}:jobs")


def test_not_a_registry(make_module: MakeModule) -> None:
    name = make_module(REGISTRY_SOURCE)
    with pytest.raises(TargetError, match=r"is not a jobwire.worker.HandlerRegistry \(got dict\)"):
        load_registry(f"{name}:not_a_registry")


def test_module_that_fails_on_import(make_module: MakeModule) -> None:
    name = make_module("raise RuntimeError('broken config')\n")
    with pytest.raises(TargetError, match="RuntimeError: broken config"):
        load_registry(f"{name}:registry")


@pytest.mark.parametrize("target", [":registry", "module:not-an-identifier", "module:a..b"])
def test_malformed_targets(target: str) -> None:
    with pytest.raises(TargetError, match="expected MODULE:ATTRIBUTE"):
        load_registry(target)


def test_main_exits_2_with_a_clear_message(
    make_module: MakeModule,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = make_module(REGISTRY_SOURCE)
    assert main([f"{name}:not_a_registry"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: jobwire-worker" in err
    assert "jobwire-worker: error:" in err
    assert "is not a jobwire.worker.HandlerRegistry (got dict)" in err

    assert main(["no_such_module_xyz:registry"]) == EXIT_USAGE
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err


def test_main_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["m:r", "--concurrency", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_json_formatter_includes_extra_fields() -> None:
    record = logging.LogRecord(
        "jobwire.worker.job", logging.INFO, __file__, 1, "hi %s", ("x",), None
    )
    record.job_id = "job-1"
    data = json.loads(json_formatter().format(record))
    assert data["message"] == "hi x"
    assert data["level"] == "INFO"
    assert data["logger"] == "jobwire.worker.job"
    assert data["job_id"] == "job-1"
    assert "args" not in data
