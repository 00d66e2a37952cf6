"""``[dashboard] listen``: the web dashboard served from the gateway process.

It is the ordinary `jobwire.dashboard` app, talking to the gateway's own
address through the public SDK, as a separate `jobwire-dashboard` would; it
only saves running a second process. uvicorn runs on the gateway's event loop
and leaves signals to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from jobwire.gateway._config import DashboardSettings
from jobwire.gateway._inprocess import loopback

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("jobwire.gateway")

_INSTALL = "pip install 'jobwire-gateway[dashboard]'"


class InProcessDashboard:
    """Serves the dashboard of this gateway on ``[dashboard] listen``.

    Args:
        settings: The ``[dashboard]`` table (``listen`` set).
        address: The gateway's own address.
        token: Bearer token of the dashboard when the gateway requires one.

    Raises:
        RuntimeError: The ``dashboard`` extra is not installed.
    """

    def __init__(self, settings: DashboardSettings, address: str, token: str | None) -> None:
        try:
            import uvicorn

            from jobwire import dashboard
        except ImportError as error:
            raise RuntimeError(
                f"[dashboard] listen needs the jobwire-dashboard package: {_INSTALL}"
            ) from error
        assert settings.listen is not None
        password = settings.password.get_secret_value() if settings.password else None
        app = dashboard.create_app(
            dashboard.DashboardSettings(
                gateway=loopback(address),
                token=token,
                listen=settings.listen,
                read_only=settings.read_only,
                password=password,
            )
        )
        host, _, port = settings.listen.rpartition(":")
        self._host = host.removeprefix("[").removesuffix("]")
        self._port = int(port)
        self._server = _signal_free_server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
        )
        self._task: asyncio.Task[None] | None = None
        #: ``HOST:PORT`` the dashboard serves on, once started.
        self.address = ""

    async def start(self) -> None:
        """Binds the port (a taken port raises OSError) and serves on the running loop."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="jobwire-dashboard"
        )
        # uvicorn tells it has started by a flag only.
        while not self._server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
            raise RuntimeError("the dashboard stopped while starting")
        host = f"[{self._host}]" if family == socket.AF_INET6 else self._host
        self.address = f"{host}:{port}"
        logger.info("dashboard serving on http://%s/", self.address)

    async def stop(self) -> None:
        """Closes open pages' event streams and stops serving."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task


def _signal_free_server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    class SignalFreeServer(uvicorn.Server):
        """A uvicorn server that leaves SIGINT and SIGTERM to the gateway."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return SignalFreeServer(config)
