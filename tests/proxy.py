"""A TCP proxy on 127.0.0.1 that can go down or hold its traffic, for fault tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from sqs_support import free_port


class TcpProxy:
    """A TCP proxy on 127.0.0.1 to a local port, that can go down like a stopped server.

    Down, it resets the connections it carries and refuses new ones; up, it
    listens on the same port again. Held, it keeps the connections but forwards
    nothing until released, as a server that is slow to answer. It runs on a
    thread of its own, so that a test blocked on a process (a gateway starting)
    does not block the traffic.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._ends: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the proxy's loop did not stop within 10 s"
        self._loop.close()

    def up(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._up())

    def down(self) -> None:
        """Reset every connection and refuse new ones."""
        self._call(self._down())

    def hold(self) -> None:
        """Forward nothing more (in either direction) until :meth:`release`."""
        self._call(self._set_flowing(False))

    def release(self) -> None:
        """Forward again what was held, and what follows."""
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def _call(self, step: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(step, self._loop).result(10)

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", self.port)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        # Reset both ends of every connection; their pipes then end on their
        # own (cancelling a client_connected_cb task makes asyncio log an error).
        # A connection accepted just before the close starts its pipe only on a
        # later turn of the loop: reset again until no pipe is left, so none is
        # left connecting upstream when the loop closes. Bounded: the listener is
        # closed, so no new pipe can start.
        # (An accepted connection's pipe starts several turns of the loop after
        # the accept: a short real wait lets it appear before it is looked for.)
        quiet = 0
        for _ in range(200):
            self._flowing.set()
            for end in list(self._ends):
                end.transport.abort()
            await asyncio.gather(*self._pipes, return_exceptions=True)
            await asyncio.sleep(0.01)
            quiet = 0 if self._pipes else quiet + 1
            if quiet >= 3:
                return
        raise RuntimeError("the proxy's connections did not end")

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._ends.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            self._ends.add(upstream_writer)
            # Both directions run to their end; a reset on either is no error here.
            await asyncio.gather(
                self._copy(reader, upstream_writer),
                self._copy(upstream_reader, writer),
                return_exceptions=True,
            )
        except OSError:
            pass  # the target refused: the client's connection goes too
        finally:
            self._pipes.discard(task)
            for end in (writer, upstream_writer):
                if end is not None:
                    self._ends.discard(end)
                    end.transport.abort()  # a reset, as a server that stopped gives

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
        if not writer.is_closing():
            writer.write_eof()
