"""PostgreSQL ``LISTEN``: other gateways' enqueues and cancellations, as they commit.

One connection of the engine stays checked out for the gateway's life and
does nothing else: a session inside a transaction receives no notifications,
and a pooled connection's reset would ``UNLISTEN``. The listeners are added
on asyncpg's own connection under SQLAlchemy's. When the connection is lost
(a database restart, a terminated backend), it is opened again with a
backoff, and ``on_reconnect`` runs so that nothing sent meanwhile is missed
for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobwire.gateway._db import AWAY, brief

logger = logging.getLogger("jobwire.gateway.sql")

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class Listener:
    """A dedicated connection listening on ``channels`` (name -> payload callback)."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: dict[str, Callable[[str], None]],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._channels = channels
        self._on_reconnect = on_reconnect
        self._conn: AsyncConnection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Open the connection and listen."""
        await self._connect()

    async def close(self) -> None:
        """Stop listening and return the connection."""
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        await self._drop()

    async def _connect(self) -> None:
        conn = await self._engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            for channel, callback in self._channels.items():
                await driver.add_listener(channel, _adapt(callback))
            driver.add_termination_listener(self._terminated)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except AWAY:
                pass

    def _terminated(self, _connection: Any) -> None:
        if self._closed or self._reconnecting is not None:
            return
        logger.warning("the LISTEN connection was lost; reconnecting")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self._drop()
            attempt = 0
            while not self._closed:
                await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                attempt += 1
                try:
                    await self._connect()
                except AWAY as error:
                    logger.warning("LISTEN reconnect failed (%s); retrying", brief(error))
                    continue
                logger.info("LISTEN connection restored")
                self._on_reconnect()
                return
        finally:
            self._reconnecting = None


def _adapt(callback: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    def on_notification(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        callback(payload)

    return on_notification
