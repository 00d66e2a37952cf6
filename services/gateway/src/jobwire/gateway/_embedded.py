"""A gateway on a private event loop in a background thread.

For notebooks, scripts and sync tests: the caller's thread (and any event
loop it runs) stays free, and the gateway keeps serving while it blocks.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from jobwire.gateway._config import GatewaySettings
from jobwire.gateway._server import Gateway

_T = TypeVar("_T")


class EmbeddedGateway:
    """Run a gateway in a daemon thread.

    By default it listens on a free port of 127.0.0.1, uses the memory provider,
    and keeps the scheduler's SQLite file in a temporary directory.

    Example:
        >>> with EmbeddedGateway() as gateway:
        ...     client = Client(gateway.address)
    """

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if settings is None:
            # Nothing to install or clean up by hand: the scheduler's SQLite file
            # lives in a temporary directory removed by stop().
            self._scratch = tempfile.TemporaryDirectory(prefix="jobwire-")
            database = f"sqlite+aiosqlite:///{self._scratch.name}/jobwire.db"
            settings = GatewaySettings.model_validate(
                {"server": {"listen": "127.0.0.1:0"}, "scheduler": {"database_url": database}}
            )
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gateway: Gateway | None = None

    @property
    def address(self) -> str:
        """``host:port`` the gateway listens on."""
        if self._gateway is None:
            raise RuntimeError("the embedded gateway is not running; call start() first")
        return self._gateway.address

    @property
    def gateway(self) -> Gateway:
        """The running :class:`Gateway` (use it only through :meth:`call`)."""
        if self._gateway is None:
            raise RuntimeError("the embedded gateway is not running; call start() first")
        return self._gateway

    def start(self, timeout: float = 10.0) -> Self:
        """Start the thread and the gateway; return once it serves."""
        if self._gateway is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="jobwire-gateway", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._gateway = self.call(Gateway(self.settings).start(), timeout)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the gateway's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the embedded gateway is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        """Stop the gateway (draining workers for up to ``grace`` seconds) and the thread."""
        if self._gateway is not None:
            try:
                self.call(self._gateway.stop(grace), grace + 10)
            finally:
                self._gateway = None
                self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __repr__(self) -> str:
        if self._gateway is None:
            return "<EmbeddedGateway (stopped)>"
        return f"<EmbeddedGateway {self.address} ({self.settings.provider.type} provider)>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def embedded(settings: GatewaySettings | None = None) -> EmbeddedGateway:
    """Start a gateway in a background thread and return it once it serves.

    The way to try jobwire with nothing else running, in a notebook or a script:
    it listens on a free port of 127.0.0.1 with the memory provider and a
    scheduler in a temporary SQLite file, and the cell or script that started it
    stays free. Stop it with ``gateway.stop()`` (or use ``EmbeddedGateway`` as a
    context manager).

    Example:
        >>> gateway = embedded()
        >>> client = Client(gateway.address)
        >>> ...
        >>> gateway.stop()

    Args:
        settings: Settings to run with instead of the defaults above.
    """
    return EmbeddedGateway(settings).start()
