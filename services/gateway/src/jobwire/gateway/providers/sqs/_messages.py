"""SQS messages as the provider holds them: received, and on their way to a consumer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from jobwire.gateway._models import JobRecord


@dataclass(slots=True, eq=False)
class Message:
    """A received SQS message: the handle of a jobwire lease on SQS."""

    queue: str
    url: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, Any]
    receive_count: int
    received_at: float
    visibility: int
    """Seconds of visibility the message was last given."""
    visible_until: float
    """When SQS shows the message again unless the gateway acts."""
    renewal: asyncio.TimerHandle | None = None
    """Renews the visibility of a lease longer than ``visibility_timeout``."""

    def take_receipt(self, newer: Message) -> None:
        """Adopt a newer receipt of the same message (SQS delivered it twice)."""
        self.receipt_handle = newer.receipt_handle
        self.received_at = newer.received_at
        self.visibility = newer.visibility
        self.visible_until = newer.visible_until


@dataclass(slots=True, eq=False)
class Received:
    """A jobwire job received from SQS, not yet leased."""

    record: JobRecord
    message: Message
    attempt: int
