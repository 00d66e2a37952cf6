"""Running a worker on its own event loop in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

_logger = logging.getLogger("jobwire.worker")

_Run = TypeVar("_Run")


class LoopThread(Generic[_Run]):
    """A daemon thread running one worker run on a new event loop.

    Args:
        worker_id: Names the thread and the log line of a fatal error.
    """

    def __init__(self, worker_id: str) -> None:
        self._worker_id = worker_id
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, prepare: Callable[[], _Run], serve: Callable[[_Run], Awaitable[None]]) -> None:
        """Start the thread: ``prepare`` on its loop, then ``serve`` what it returned.

        Raises:
            BaseException: What ``prepare`` raised (a configuration error).
        """
        started = threading.Event()
        self._error = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                run = prepare()
            except BaseException as exc:
                self._error = exc
                return
            finally:
                started.set()
            await serve(run)

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                self._error = exc
                _logger.error("worker %s stopped: %s", self._worker_id, exc)

        self._thread = threading.Thread(
            target=target, name=f"jobwire-worker-{self._worker_id}", daemon=True
        )
        self._thread.start()
        started.wait()
        # Configuration errors surface here rather than only in the log.
        if self._error is not None:
            self._thread.join()
            self._thread = None
            error, self._error = self._error, None
            raise error

    def stop(self, timeout: float | None, request_stop: Callable[[], None]) -> None:
        """Call ``request_stop`` on the thread's loop and wait for the thread.

        Raises:
            BaseException: The fatal error the run stopped on, if any.
            TimeoutError: The thread did not finish within ``timeout``.
            RuntimeError: The thread was never started.
        """
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            raise RuntimeError("worker was not started with start()")
        if thread.is_alive():
            # RuntimeError: the loop already closed, the thread is about to end.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(request_stop)
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"worker did not stop within {timeout}s")
        self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error
