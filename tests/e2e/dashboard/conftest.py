"""Browser tests: a seeded gateway, the dashboard over HTTP, Debian's Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dashboard_support import (
    ConsoleErrors,
    Seeded,
    Served,
    chromium_path,
    seeded_gateway,
    served_dashboard,
)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    with seeded_gateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def served(seeded: Seeded) -> Iterator[Served]:
    # Samples often, so the overview's live updates come within a test's wait.
    with served_dashboard(seeded.address, poll_interval=0.2) as dashboard:
        yield dashboard


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def page(browser: Browser, console: ConsoleErrors) -> Iterator[Page]:
    """A fresh browser context and page; confirmation dialogs are accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    console.watch(tab)
    tab.on("dialog", lambda dialog: dialog.accept())
    try:
        yield tab
    finally:
        context.close()
