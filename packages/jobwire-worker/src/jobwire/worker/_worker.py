"""The worker: connects to a gateway, runs handlers, reconnects until shut down."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from functools import cached_property
from types import TracebackType
from typing import Self

from jobwire.worker._framing import SessionSettings
from jobwire.worker._options import WorkerOptions
from jobwire.worker._serving import Gateway, Run, Sessions
from jobwire.worker._thread import LoopThread

_logger = logging.getLogger("jobwire.worker")


class Worker(WorkerOptions):
    """Streams jobs from a jobwire gateway and runs their handlers.

    Example::

        worker = Worker("127.0.0.1:50051", registry=registry, concurrency=16)
        worker.run_sync()  # until SIGTERM or Ctrl-C

        # or, inside an application's event loop
        async with Worker("127.0.0.1:50051", registry=registry):
            await app_main()

    Lifecycle, as with temporalio's and arq's workers: :meth:`run` serves
    until :meth:`shutdown`; ``async with`` starts :meth:`run` in a task and
    shuts down on exit; :meth:`run_sync` owns its event loop and turns
    SIGTERM/SIGINT into a graceful shutdown; :meth:`start` and :meth:`stop`
    run the worker in a background thread (for notebooks and sync programs).

    The worker keeps one stream open to the gateway and reconnects with
    backoff when it breaks, under the same ``worker_id``. Delivery is
    at-least-once: a job whose attempt was lost to a crash or a broken stream
    runs again, so handlers should be idempotent.

    Args:
        target: Gateway address, ``host:port``.
        registry: Handlers by job type.
        queues: Queues to take jobs from.
        concurrency: Most handlers running at once. Sync handlers run in a
            thread pool of this size.
        max_in_flight: Credits: most jobs leased to this worker at once.
            Defaults to four times ``concurrency``, so the next jobs are
            already here when a handler finishes. Lower it (down to
            ``concurrency``) for long jobs, so none waits on a busy worker
            while another is idle.
        worker_id: Identifies the worker to the gateway, stable across
            reconnects. Defaults to ``"{hostname}-{pid}-{random}"``.
        job_types: Job types to ask for; defaults to the registry's types.
        lease_duration: Lease length to ask for; the gateway clamps it.
            Defaults to the gateway's.
        token: Sent as ``authorization: Bearer <token>``. Defaults to the
            ``JOBWIRE_TOKEN`` environment variable.
        tls: Connect over TLS (mutual TLS with a certificate); None: plaintext.
        shutdown_timeout: How long a graceful shutdown waits for running
            handlers before cancelling them.
        reconnect: Delays between reconnection attempts.
        serializer: Decodes payloads and encodes results; JSON by default.
        labels: Extra labels shown to operators (host name, pid and SDK
            version are always sent).
        channel_options: Extra gRPC channel options (keepalive, TLS target
            name override, ...).
    """

    _run: Run | None = None
    _owner: asyncio.Task[object] | None = None
    _background: asyncio.Task[None] | None = None
    _failed_owner = False

    @cached_property
    def _thread(self) -> LoopThread[Run]:
        """Where :meth:`start` runs the worker."""
        return LoopThread(self._worker_id)

    @property
    def is_running(self) -> bool:
        """True between the start and the end of :meth:`run`."""
        return self._run is not None

    # Async lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve jobs until :meth:`shutdown` is called.

        Transient stream failures (gateway unavailable or restarting, network
        errors, ``drain``) are retried with backoff under the same worker id.

        Raises:
            ConnectionFailedError: The gateway rejected the worker in a way
                retrying cannot fix (bad token, invalid settings, no worker
                service at ``target``).
            RuntimeError: The worker is already running.
            ValueError: There are no job types to ask for.
        """
        run = self._prepare()
        run.task = asyncio.current_task()
        await self._serve(run)

    async def shutdown(self) -> None:
        """Stop gracefully and wait until :meth:`run` has returned.

        The worker stops taking jobs, lets running and already delivered jobs
        finish (up to ``shutdown_timeout``, then cancels them), sends their
        results, and closes the stream. Does nothing when not running. Works
        from any event loop, also for a worker started with :meth:`start`.
        """
        run = self._run
        if run is None:
            return
        if asyncio.get_running_loop() is not run.loop:
            # The worker runs on its own loop in a thread: stop it there.
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.shutdown(), run.loop))
            return
        self._request_stop(run)
        await run.done.wait()

    async def __aenter__(self) -> Self:
        run = self._prepare()
        self._owner = asyncio.current_task()
        self._failed_owner = False
        run.task = asyncio.create_task(self._serve(run), name=f"jobwire-worker-{self._worker_id}")
        run.task.add_done_callback(self._on_background_run_done)
        self._background = run.task
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run, owner, task = self._run, self._owner, self._background
        self._owner = self._background = None
        if run is not None:
            self._request_stop(run)
        if task is None:
            return
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            # Cancelled while shutting down gracefully: stop now instead.
            task.cancel()
            raise
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and (exc is None or self._failed_owner):
            if self._failed_owner and owner is not None:
                owner.uncancel()  # We cancelled the block only to surface this error.
            raise error

    def _on_background_run_done(self, task: asyncio.Task[None]) -> None:
        # A fatal error must not leave the `async with` body waiting forever
        # for jobs that will never run: cancel it, __aexit__ raises the error.
        if task.cancelled() or task.exception() is None:
            return
        _logger.error("worker stopped: %s", task.exception())
        owner = self._owner
        if owner is not None and not owner.done():
            self._failed_owner = True
            owner.cancel()

    def _prepare(self) -> Run:
        if self._run is not None:
            raise RuntimeError("worker is already running")
        job_types = self._job_types if self._job_types is not None else self._registry.types
        if not job_types:
            # An empty list would mean "all types" to the gateway: every job
            # would come here and fail without a handler.
            raise ValueError("the registry has no handlers and no job_types were given")
        missing = [t for t in job_types if t not in self._registry]
        if missing:
            raise ValueError(f"job_types without a handler in the registry: {missing}")
        self._run = Run(loop=asyncio.get_running_loop())
        return self._run

    def _request_stop(self, run: Run) -> None:
        if run.stop.is_set():
            return
        run.stop.set()
        session, session_task = run.session, run.session_task
        if session is not None and session.opened:
            session.request_stop()
        elif session_task is not None:
            # Still connecting: nothing to finish, so do not wait for the gateway.
            session_task.cancel()

    def _force_stop(self, run: Run) -> None:
        run.forced = True
        if run.task is not None:
            run.task.cancel()

    async def _serve(self, run: Run) -> None:
        job_types = self._job_types if self._job_types is not None else self._registry.types
        settings = SessionSettings(
            worker_id=self._worker_id,
            queues=self._queues,
            job_types=job_types,
            max_in_flight=self._max_in_flight,
            lease_duration=self._lease_duration,
            labels=self._labels,
            metadata=self._metadata,
            shutdown_timeout=self._shutdown_timeout,
        )
        sessions = Sessions(
            gateway=Gateway(self._target, self._credentials, self._channel_options),
            settings=settings,
            registry=self._registry,
            serializer=self._serializer,
            concurrency=self._concurrency,
            reconnect=self._reconnect,
        )
        try:
            await sessions.serve(run)
        finally:
            self._run = None
            run.done.set()
            _logger.info("worker %s stopped", self._worker_id)

    # Sync lifecycle -----------------------------------------------------------------

    def run_sync(self) -> None:
        """Run the worker on a new event loop until SIGTERM or SIGINT.

        The first signal shuts down gracefully (see :meth:`shutdown`); a
        second one stops at once, cancelling running handlers. Blocks until
        the worker has stopped. Signals are only handled in the main thread.

        Raises:
            ConnectionFailedError: See :meth:`run`.
        """
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        run = self._prepare()
        run.task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if not run.stop.is_set():
                _logger.info("%s received: shutting down gracefully (again to stop now)", name)
                self._request_stop(run)
            else:
                _logger.warning("%s received again: stopping now", name)
                self._force_stop(run)

        installed: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, on_signal, signum)
                    installed.append(signum)
                except NotImplementedError:  # Windows event loops
                    signal.signal(signum, lambda s, _f: loop.call_soon_threadsafe(on_signal, s))
        try:
            await self._serve(run)
        except asyncio.CancelledError:
            if not run.forced:
                raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def start(self) -> None:
        """Run the worker in a background (daemon) thread and return at once.

        Meant for notebooks and sync programs. Stop it with :meth:`stop`; a
        fatal error is logged and raised again by :meth:`stop`.

        Raises:
            RuntimeError: The worker was already started.
        """
        if self._thread.alive:
            raise RuntimeError("worker is already started")
        self._thread.start(self._prepare, self._serve_here)

    def stop(self, timeout: float | None = None) -> None:
        """Shut down a worker started with :meth:`start` and wait for its thread.

        Args:
            timeout: Most seconds to wait; None waits for the graceful
                shutdown (bounded by ``shutdown_timeout``).

        Raises:
            ConnectionFailedError: The worker had stopped on a fatal error.
            TimeoutError: The thread did not finish within ``timeout``.
            RuntimeError: The worker was not started with :meth:`start`.
        """
        self._thread.stop(timeout, self._stop_from_thread)

    async def _serve_here(self, run: Run) -> None:
        run.task = asyncio.current_task()
        await self._serve(run)

    def _stop_from_thread(self) -> None:
        if self._run is not None:
            self._request_stop(self._run)
