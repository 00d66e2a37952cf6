"""The ``jobwire`` operator command against a real gateway."""

from __future__ import annotations

import pytest

from jobwire.client._cli import main
from jobwire.gateway import EmbeddedGateway


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich sizes tables to the terminal; a wide one keeps ids and types whole.
    monkeypatch.setenv("COLUMNS", "250")


def run(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    code = main(["--gateway", embedded_gateway.address, *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_schedules_lifecycle(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        embedded_gateway,
        capsys,
        "schedules",
        "register",
        "nightly",
        "report:build",
        "0 2 * * *",
        "--time-zone",
        "Europe/Paris",
        "--payload",
        '{"team": "a"}',
    )
    assert code == 0, out
    assert "nightly" in out
    code, out = run(embedded_gateway, capsys, "schedules", "pause", "nightly")
    assert "paused" in out
    code, out = run(embedded_gateway, capsys, "schedules", "list")
    assert code == 0
    assert "nightly" in out
    assert "paused" in out
    assert "Europe/Paris" in out
    code, out = run(embedded_gateway, capsys, "schedules", "trigger", "nightly")
    assert "report:build" in out
    code, out = run(embedded_gateway, capsys, "schedules", "delete", "nightly")
    assert "deleted nightly" in out
    code, out = run(embedded_gateway, capsys, "schedules", "show", "nightly")
    assert code == 1
    assert "nightly" in out


def test_jobs_and_stats(
    embedded_gateway: EmbeddedGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(embedded_gateway, capsys, "enqueue", "email:send", '{"to": "ada"}')
    assert code == 0
    assert "email:send" in out
    code, out = run(embedded_gateway, capsys, "jobs", "--state", "pending")
    assert "email:send" in out
    code, out = run(embedded_gateway, capsys, "stats")
    assert "default" in out
    code, out = run(embedded_gateway, capsys, "schedules", "register", "x", "t", "61 * * * *")
    assert code == 1
    assert "schedule.cron" in out
