"""The SQS client: opened with the configured region and profile, queues checked."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from jobwire.gateway._provider_config import SqsProviderSettings
from jobwire.gateway.providers.sqs._dispatcher import MAX_POLLS
from jobwire.gateway.providers.sqs._errors import sqs_error

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

logger = logging.getLogger("jobwire.gateway.sqs")

_SDK_ATTEMPTS = 3  # botocore's own tries (standard mode: throttling, 5xx, network errors)
_BATCH_CALLS = 3 * 8  # sends, deletes and visibility changes in flight per queue


async def open_client(
    settings: SqsProviderSettings, stack: AsyncExitStack, wait_time: int
) -> SQSClient:
    """Open the client on ``stack`` and check that every configured queue exists.

    Raises:
        RuntimeError: a configuration error (region, profile, credentials, a
            queue URL that does not exist).
    """
    try:
        session = AioSession(profile=settings.profile)
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": _SDK_ATTEMPTS},
            connect_timeout=5,
            read_timeout=wait_time + 10,
            max_pool_connections=MAX_POLLS * (len(settings.queue_urls) + 1) + _BATCH_CALLS,
        )
        client = await stack.enter_async_context(
            session.create_client(
                "sqs",
                region_name=settings.region,
                endpoint_url=settings.endpoint_url,
                config=config,
            )
        )
    except NoRegionError:
        raise RuntimeError(
            "provider.region: no AWS region configured (set it, or AWS_DEFAULT_REGION)"
        ) from None
    except ProfileNotFound as error:
        raise RuntimeError(f"provider.profile: {error}") from None
    await _check_queues(client, settings)
    return client


async def _check_queues(client: SQSClient, settings: SqsProviderSettings) -> None:
    named = {f"provider.queue_urls.{name}": url for name, url in settings.queue_urls.items()}
    if settings.dead_letter_queue_url:
        named["provider.dead_letter_queue_url"] = settings.dead_letter_queue_url
    for key, url in named.items():
        try:
            await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except (ClientError, NoCredentialsError) as error:
            raise RuntimeError(f"{key}: {sqs_error(error, url).message}") from None
        except BotoCoreError as error:
            # The endpoint may come up after the gateway: serve and retry.
            logger.warning("%s: cannot reach SQS at start (%s); retrying as used", key, error)
            return


async def approximate_counts(
    client: SQSClient, queue: str, url: str
) -> tuple[int, int, int] | None:
    """SQS's own (visible, in flight, delayed) counts; None when SQS cannot be reached."""
    try:
        response = await client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
    except (ClientError, BotoCoreError) as error:
        # Stats still answer from the records when SQS is away.
        logger.warning("queue %r: no approximate counts from SQS: %s", queue, error)
        return None
    attributes = response.get("Attributes", {})
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )
