"""The dashboard's views against a real, seeded gateway, through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobwire.dashboard import DashboardSettings, create_app

from dashboard_support import DashboardFactory, Seeded, seeded_gateway


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    with seeded_gateway() as gateway:
        yield gateway


@pytest.fixture
def dashboard_factory(seeded: Seeded) -> Iterator[DashboardFactory]:
    """Dashboards of the seeded gateway with settings overrides; closed after the test."""
    opened: list[TestClient] = []

    def open_dashboard(**options: Any) -> TestClient:
        settings = DashboardSettings(gateway=seeded.address, **options)
        client = TestClient(create_app(settings), follow_redirects=False)
        client.__enter__()
        opened.append(client)
        return client

    yield open_dashboard
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def dashboard(dashboard_factory: DashboardFactory) -> TestClient:
    return dashboard_factory()
