"""Job records of the broker providers (SQS, RabbitMQ) in the gateway's database.

A broker holds messages; the state clients ask about (attempts, results,
errors, deduplication keys, pauses, worker streams) lives in tables of the
gateway's SQL database, one set per provider (:class:`RecordTables`), written
through a group-commit buffer (:class:`JobRecords`) and shared by every
gateway on the same queues, which look up each other's changes
(:class:`RemoteChanges`). :class:`RecordsProvider` answers reads, cancels,
counts, replays, purges and pauses from them, once for every broker.
"""

from __future__ import annotations

from jobwire.gateway.providers._records._operations import Operations
from jobwire.gateway.providers._records._provider import BROKER_REPLAYABLE, RecordsProvider
from jobwire.gateway.providers._records._store import JobRecords, ReceiptView
from jobwire.gateway.providers._records._sync import RemoteChanges
from jobwire.gateway.providers._records._tables import (
    RecordTables,
    effective,
    to_datetime,
)

__all__ = [
    "BROKER_REPLAYABLE",
    "JobRecords",
    "Operations",
    "ReceiptView",
    "RecordTables",
    "RecordsProvider",
    "RemoteChanges",
    "effective",
    "to_datetime",
]
