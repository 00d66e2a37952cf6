"""A TCP proxy on 127.0.0.1 that can go down or hold its traffic, for fault tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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
        self._acceptor: asyncio.Task[None] | None = None
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
        # Our own accept loop, not asyncio.start_server: on Python 3.11, closing a
        # Server while an accepted connection waits for its transport fails that
        # transport's construction silently and leaks its socket.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self._acceptor = asyncio.create_task(self._accept(listener))

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with listener:
            while True:
                connection, _ = await loop.sock_accept(listener)
                if self._acceptor is None:  # going down: refuse, stop listening
                    connection.close()
                    return
                self._pipes.add(asyncio.create_task(self._carry(connection)))

    async def _stop_accepting(self) -> None:
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        # Woken by a connection of our own rather than cancelled: a cancelled
        # sock_accept can lose a connection it has just accepted. The acceptor
        # may take and close the poke before its connect is seen complete here
        # (it then fails with a reset): either way the acceptor was woken.
        poke = socket.socket()
        poke.setblocking(False)
        with poke, contextlib.suppress(ConnectionError):
            await asyncio.get_running_loop().sock_connect(poke, ("127.0.0.1", self.port))
        await acceptor

    async def _down(self) -> None:
        await self._stop_accepting()
        # Reset both ends of every connection until every pipe has ended; a pipe
        # still opening its ends has them reset on a later round. Bounded: no new
        # pipe starts once the acceptor has stopped.
        for _ in range(500):
            self._flowing.set()
            for end in list(self._ends):
                end.transport.abort()
            if not self._pipes:
                return
            await asyncio.wait(set(self._pipes), timeout=0.01)
        raise RuntimeError("the proxy's connections did not end")

    async def _carry(self, connection: socket.socket) -> None:
        task = asyncio.current_task()
        assert task is not None
        writer: asyncio.StreamWriter | None = None
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=connection)
            self._ends.add(writer)
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
            if writer is None:
                connection.close()
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
