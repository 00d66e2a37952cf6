"""A seeded gateway with jobs in every state, a worker, and the dashboard served over HTTP.

Shared by the dashboard's view tests (Starlette's TestClient) and browser tests
(Playwright on Debian's Chromium). Everything runs in threads with their own
event loops, so tests are plain sync functions.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import ConsoleMessage, Page
from starlette.testclient import TestClient

from jobwire.client import Client, Job, JobState
from jobwire.dashboard import DashboardSettings, create_app
from jobwire.gateway import EmbeddedGateway
from jobwire.gateway.testing import settings_for_tests
from jobwire.worker import HandlerRegistry, JobContext, NonRetryableError, Retry, Worker

from timing import FRAME_TIMEOUT

XSS = "<script>window.__xss = 1</script>"
CHROMIUM = "/usr/bin/chromium"
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium chromium-driver"
WORKED_QUEUES = ("default", "pausable")
#: Opens a TestClient on a dashboard of the seeded gateway, with settings overrides.
DashboardFactory = Callable[..., TestClient]


def csrf_of(html: str) -> str:
    """The CSRF token rendered in a page's forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match[1]


def wait_until(check: Callable[[], bool], timeout: float = FRAME_TIMEOUT) -> None:
    """Polls ``check`` until it is true (state lives in another thread's gateway)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s: {check}")
        time.sleep(0.02)


def wait_state(client: Client, job_id: str, *states: JobState) -> Job:
    """Waits until the job is in one of ``states``; returns it."""
    found: list[Job] = []

    def reached() -> bool:
        found[:] = [client.get_job(job_id)]
        return found[0].state in states

    wait_until(reached)
    return found[0]


@dataclass
class Gates:
    """Handlers that block until a test lets them go on."""

    slow: threading.Event = field(default_factory=threading.Event)
    # Per-key gates of "gated:run" and "fixable:run" jobs, so a test sees a job
    # processing, then finishing.
    by_key: dict[str, threading.Event] = field(default_factory=dict)
    # Keys of "fixable:run" jobs whose bug is fixed: they wait on their gate, then succeed.
    fixed: set[str] = field(default_factory=set)

    def gate(self, key: str) -> threading.Event:
        return self.by_key.setdefault(key, threading.Event())

    def release_all(self) -> None:
        self.slow.set()
        for event in self.by_key.values():
            event.set()


def registry(gates: Gates) -> HandlerRegistry:
    """The seeded worker's handlers, one per outcome."""
    handlers = HandlerRegistry()

    @handlers.handler("email:send")
    async def send(ctx: JobContext) -> dict[str, Any]:
        return {"sent_to": ctx.payload.get("to") if isinstance(ctx.payload, dict) else None}

    @handlers.handler("image:resize")
    async def resize(ctx: JobContext) -> None:
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        if payload.get("fixed"):
            return
        raise NonRetryableError(f"image too large: {payload.get('size', '9000x9000')}")

    @handlers.handler("sync:crm")
    async def flaky(ctx: JobContext) -> None:
        raise Retry(delay=3600, message="CRM answered 503; later")

    @handlers.handler("export:slow")
    async def slow(ctx: JobContext) -> None:
        ctx.progress(1, 3, "exporting")
        await asyncio.to_thread(gates.slow.wait)

    @handlers.handler("gated:run")
    async def gated(ctx: JobContext) -> str:
        await asyncio.to_thread(gates.gate(str(ctx.payload.get("key"))).wait)
        return "done"

    @handlers.handler("fixable:run")
    async def fixable(ctx: JobContext) -> str:
        key = str(ctx.payload.get("key"))
        if key not in gates.fixed:
            raise NonRetryableError(f"bug {key}")
        await asyncio.to_thread(gates.gate(key).wait)
        return "fixed"

    return handlers


@dataclass
class Seeded:
    """The gateway, a client to it, and one job id per state."""

    gateway: EmbeddedGateway
    client: Client
    gates: Gates
    ids: dict[JobState, str]
    xss_id: str
    dead_ids: list[str]

    @property
    def address(self) -> str:
        return self.gateway.address


def seed(client: Client) -> tuple[dict[JobState, str], str, list[str]]:
    """Jobs in every state, a job with a script payload, and a schedule; waits for them."""
    ids: dict[JobState, str] = {}
    ids[JobState.PENDING] = client.enqueue("report:build", {"month": 11}, queue="reports").id
    ids[JobState.SCHEDULED] = client.enqueue("email:send", {"to": "later"}, delay=3600).id
    cancelled = client.enqueue("email:send", {"to": "nobody"}, delay=3600)
    ids[JobState.CANCELLED] = client.cancel_job(cancelled.id).id
    ids[JobState.COMPLETED] = client.enqueue("email:send", {"to": "ada@example.com"}).id
    ids[JobState.FAILED] = client.enqueue("sync:crm", {"account": 42}, max_retries=5).id
    ids[JobState.PROCESSING] = client.enqueue("export:slow", {"rows": 10_000}).id
    dead = [client.enqueue("image:resize", {"size": "9000x9000", "n": n}).id for n in range(3)]
    dead.append(client.enqueue("image:resize", {"size": "1x0"}).id)
    ids[JobState.DEAD] = dead[0]
    xss = client.enqueue("report:build", {"title": XSS}, queue="reports", attributes={"x": XSS})
    client.register_recurring(
        "nightly-report",
        "report:build",
        {"scope": "all"},
        schedule="30 4 * * *",
        time_zone="Europe/Paris",
        queue="reports",
        description="the monthly numbers, every night",
    )
    client.register_recurring("heartbeat", "email:send", {"to": "ops"}, schedule="every 5 minutes")
    for state, job_id in ids.items():
        wait_state(client, job_id, state)
    for job_id in dead:
        wait_state(client, job_id, JobState.DEAD)
    return ids, xss.id, dead


@contextmanager
def seeded_gateway() -> Iterator[Seeded]:
    """A gateway with a connected worker and jobs in every state."""
    gates = Gates()
    with EmbeddedGateway(settings_for_tests()) as gateway, Client(gateway.address) as client:
        worker = Worker(
            gateway.address, registry=registry(gates), queues=WORKED_QUEUES, concurrency=4
        )
        worker.start()
        try:
            ids, xss, dead = seed(client)
            yield Seeded(gateway, client, gates, ids, xss, dead)
        finally:
            gates.release_all()
            worker.stop(timeout=10)


@dataclass
class Served:
    """A dashboard served by uvicorn on 127.0.0.1 in a thread."""

    url: str
    settings: DashboardSettings


@contextmanager
def served_dashboard(gateway: str, **options: Any) -> Iterator[Served]:
    """Serves a dashboard of ``gateway`` on a free port until the block ends."""
    settings = DashboardSettings(gateway=gateway, listen="127.0.0.1:0", **options)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "the dashboard did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        # A server still running would leave its connections to be collected
        # (and reported) in some later test: fail here, where it happened.
        assert not thread.is_alive(), "the dashboard did not stop within 10 s"


def chromium_path() -> str:
    """Debian's Chromium; in CI its absence fails with the install command."""
    if os.path.exists(CHROMIUM) and shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"Chromium is not installed at {CHROMIUM}; install it with: {INSTALL_CHROMIUM}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class ConsoleErrors(list[str]):
    """Every console error and uncaught exception of a page."""

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.append(f"pageerror: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.append(f"console: {message.text} at {message.location}")
