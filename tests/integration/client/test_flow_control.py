"""Flow control through both clients and the ``jobwire queue`` command."""

from __future__ import annotations

import json

import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    FlowControlUnsupportedError,
    InvalidArgumentError,
    JobState,
    QueueConfig,
)
from jobwire.client._cli import main
from jobwire.gateway import EmbeddedGateway
from jobwire.gateway.testing import settings_for_tests

from rabbitmq_support import RabbitVhost


async def test_the_async_client_configures_a_queue_and_sees_held_jobs(
    client: AsyncClient,
) -> None:
    config = await client.update_queue_config(
        "reports", max_concurrency_per_key=1, rate="100/minute", burst=5
    )
    assert config == QueueConfig(
        queue="reports", max_concurrency_per_key=1, rate="100/minute", burst=5
    )
    assert (await client.get_queue_config("reports")) == config
    assert [c.queue for c in await client.list_queue_configs()] == ["reports"]
    jobs = [
        await client.enqueue("t", queue="reports", concurrency_key="customer-7") for _ in range(2)
    ]
    assert jobs[0].concurrency_key == "customer-7"
    # No worker: the jobs wait for one, not for a limit.
    assert (await client.get_job(jobs[1].id)).waiting_reason is None
    changed = await client.update_queue_config("reports", on_busy_key="cancel_newest")
    assert (changed.on_busy_key, changed.rate) == ("cancel_newest", "100/minute")
    third = await client.enqueue("t", queue="reports", concurrency_key="customer-7")
    assert third.state is JobState.CANCELLED
    assert third.last_error is not None
    assert "cancel_newest" in third.last_error.message
    [row] = await client.stats("reports")
    assert (row.pending, row.held_by_key, row.busy_keys) == (2, 0, 0)


async def test_bad_settings_are_refused_naming_them(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError, match=r"config\.rate\.text"):
        await client.update_queue_config("reports", rate="fast")
    with pytest.raises(InvalidArgumentError, match=r"config\.max_concurrency_per_key"):
        await client.update_queue_config("reports", max_concurrency_per_key=-1)
    with pytest.raises(InvalidArgumentError, match="burst"):
        await client.update_queue_config("reports", burst=3)
    with pytest.raises(InvalidArgumentError, match="name at least one setting"):
        await client.update_queue_config("reports")
    with pytest.raises(InvalidArgumentError, match="concurrency_key"):
        await client.enqueue("t", concurrency_key="k" * 257)


def test_the_sync_client_configures_a_queue(sync_client: Client) -> None:
    config = sync_client.update_queue_config("exports", max_concurrency=4, key_weights={"big": 3})
    assert (config.max_concurrency, dict(config.key_weights)) == (4, {"big": 3})
    assert sync_client.get_queue_config("exports").max_concurrency == 4
    job = sync_client.enqueue("t", queue="exports", concurrency_key="big")
    assert sync_client.get_job(job.id).concurrency_key == "big"
    assert [c.queue for c in sync_client.list_queue_configs()] == ["exports"]
    removed = sync_client.update_queue_config("exports", max_concurrency=None, key_weights=None)
    assert removed == QueueConfig(queue="exports")


def test_a_provider_without_flow_control_raises_the_typed_error(
    rabbitmq_vhost: RabbitVhost, request: pytest.FixtureRequest
) -> None:
    prefix = rabbitmq_vhost.prefix_of(request.node.nodeid)
    provider = {"type": "rabbitmq", "url": rabbitmq_vhost.url, "queue_prefix": prefix}
    settings = settings_for_tests(provider=provider)
    with EmbeddedGateway(settings) as gateway, Client(gateway.address) as client:
        with pytest.raises(FlowControlUnsupportedError, match="does not enforce flow control"):
            client.enqueue("t", concurrency_key="customer-7")
        with pytest.raises(FlowControlUnsupportedError):
            client.update_queue_config("reports", max_concurrency_per_key=2)


def test_the_queue_command_shows_and_changes_a_config(
    embedded_gateway: EmbeddedGateway,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    base = ["--gateway", embedded_gateway.address, "queue"]
    code = main([*base, "config", "reports", "--max-per-key", "2", "--rate", "100/minute"])
    assert code == 0
    assert "100/minute (burst 1)" in capsys.readouterr().out
    assert main([*base, "config", "reports", "--burst", "10", "--weight", "big=3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "queue": "reports",
        "max_concurrency_per_key": 2,
        "max_concurrency": 0,
        "rate": "100/minute",
        "burst": 10,
        "on_busy_key": "queue",
        "key_weights": {"big": 3},
        "fifo_across_keys": False,
    }
    assert main([*base, "config", "reports", "--fifo-across-keys", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fifo_across_keys"] is True
    assert main([*base, "config", "reports", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["burst"] == 10
    assert main([*base, "configs"]) == 0
    assert "reports" in capsys.readouterr().out
    assert main([*base, "config", "reports", "--rate", "fast"]) == 1
    assert "config.rate.text" in capsys.readouterr().err
    assert main([*base, "config", "reports", "--rate", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rate"] is None
    job_code = main(["--gateway", embedded_gateway.address, "enqueue", "t", "--key", "c-1"])
    assert job_code == 0
    assert "c-1" in capsys.readouterr().out
