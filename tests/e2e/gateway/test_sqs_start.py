"""``jobwire-gateway`` with ``type = "sqs"`` refuses to start without AWS credentials."""

from __future__ import annotations

from pathlib import Path

import commands
from sqs_support import SqsQueues


def test_without_credentials_the_gateway_refuses_to_start(
    sqs_queues: SqsQueues, tmp_path: Path
) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text(
        '[provider]\ntype = "sqs"\nregion = "us-east-1"\n'
        f'endpoint_url = "{sqs_queues.endpoint}"\n'
        f'[provider.queue_urls]\ndefault = "{sqs_queues.urls["default"]}"\n'
    )
    result = commands.run(
        "jobwire.gateway",
        "--config",
        str(config),
        "--listen",
        "127.0.0.1:0",
        cwd=tmp_path,
        # No credentials anywhere: not in the environment, not in ~/.aws.
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        # The session's moto server exports test credentials; empty means none.
        AWS_ACCESS_KEY_ID="",
        AWS_SECRET_ACCESS_KEY="",
        AWS_SESSION_TOKEN="",
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("jobwire-gateway: cannot start: ")
    assert "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line
