"""Configuration errors of ``jobwire-gateway``: one line each, ``FILE:LINE: KEY: ...``, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobwire.gateway.providers import PROVIDERS

import commands


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[server]\nlisten = "127.0.0.1:0"\n[provider]\ntype = "kafka"\n',
            "jobwire.toml:4: provider.type: unknown provider 'kafka'; expected one of: "
            + ", ".join(PROVIDERS),
        ),
        (
            '[server]\nshutdown_grace = "30 seconds"\n',
            'jobwire.toml:2: server.shutdown_grace: invalid duration; expected seconds (30), "30s",'
            ' "250ms", "5m", "1h", "1d" or ISO 8601 ("PT30S")',
        ),
        (
            '[server]\nlisten = "127.0.0.1:0\n',
            "jobwire.toml:2: invalid TOML: Illegal character '\\n'",
        ),
        (
            '[server]\nlisten = "127.0.0.1:0"\nlease_duraton = 5\n',
            "jobwire.toml:3: server.lease_duraton: unknown key; expected one of: auth, ",
        ),
        (
            '[provider]\ntype = "sqs"\nregoin = "x"\n[provider.queue_urls]\ndefault = "http://q"\n',
            "jobwire.toml:3: provider.regoin: unknown key; expected one of: database_url, ",
        ),
        (
            '[worker]\nmode = "sideways"\n',
            "jobwire.toml:2: worker.mode: Input should be 'standalone' or 'in-process'",
        ),
        (
            '[queues.reports]\nmax_concurrency_per_key = 2\nrate = "fast"\n',
            'jobwire.toml:3: queues.reports.rate: expected "COUNT/PERIOD" such as "100/minute",'
            ' "5/second", "1000/hour" or "10/30s", got \'fast\'',
        ),
        (
            "[queues.reports]\nmax_concurrency_per_key = -2\n",
            "jobwire.toml:2: queues.reports.max_concurrency_per_key: must be 0 (no limit) to"
            " 1000000000, got -2",
        ),
        (
            "[queues.reports]\nmax_per_key = 2\n",
            "jobwire.toml:2: queues.reports.max_per_key: unknown key; expected one of: burst, ",
        ),
    ],
    ids=[
        "provider",
        "duration",
        "toml",
        "key",
        "provider-key",
        "literal",
        "rate",
        "negative-limit",
        "queue-key",
    ],
)
def test_a_config_error_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "jobwire.toml").write_text(text)
    result = commands.run("jobwire.gateway", "--config", "jobwire.toml", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"jobwire-gateway: {expected}"), line


def test_an_environment_variable_is_named_instead_of_a_line(tmp_path: Path) -> None:
    result = commands.run("jobwire.gateway", cwd=tmp_path, JOBWIRE_SERVER__LEASE_DURATION="soon")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "jobwire-gateway: $JOBWIRE_SERVER__LEASE_DURATION: server.lease_duration: invalid "
        'duration; expected seconds (30), "30s", "250ms", "5m", "1h", "1d" or ISO 8601 ("PT30S")'
    )


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = commands.run("jobwire.gateway", "--config", "absent.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "jobwire-gateway: config file not found: absent.toml"
