"""The `jobwire-dashboard` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from jobwire.dashboard.__about__ import __version__
from jobwire.dashboard._app import create_app
from jobwire.dashboard._errors import ConfigError
from jobwire.dashboard._settings import DEFAULT_LISTEN, DashboardSettings


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    cli = argparse.ArgumentParser(
        prog="jobwire-dashboard",
        description="Web dashboard for jobwire operators, talking to a gateway through the SDK.",
    )
    cli.add_argument("--version", action="version", version=f"jobwire-dashboard {__version__}")
    cli.add_argument(
        "--gateway",
        default=os.environ.get("JOBWIRE_GATEWAY", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="the gateway (default: $JOBWIRE_GATEWAY or 127.0.0.1:50051)",
    )
    cli.add_argument(
        "--token",
        default=os.environ.get("JOBWIRE_TOKEN"),
        help="bearer token for the gateway (default: $JOBWIRE_TOKEN); also accepted as login",
    )
    cli.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve the dashboard (default: {DEFAULT_LISTEN}); "
        "beyond loopback a login is required",
    )
    cli.add_argument(
        "--password",
        default=os.environ.get("JOBWIRE_DASHBOARD_PASSWORD"),
        help="login password (default: $JOBWIRE_DASHBOARD_PASSWORD)",
    )
    cli.add_argument("--read-only", action="store_true", help="hide every action")
    cli.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between two samples of the queue statistics (default: 2)",
    )
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the dashboard until interrupted; exit code 2 for bad options."""
    cli = parser()
    args = cli.parse_args(argv)
    try:
        settings = DashboardSettings(
            gateway=args.gateway,
            token=args.token or None,
            listen=args.listen,
            read_only=args.read_only,
            password=args.password or None,
            poll_interval=args.poll_interval,
        )
    except ConfigError as error:
        cli.exit(2, f"jobwire-dashboard: error: {error}\n")
    host, port = settings.address
    print(f"jobwire-dashboard {__version__}: http://{host}:{port}/ -> gateway {settings.gateway}")
    sys.stdout.flush()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        # Open event streams would hold a graceful stop forever.
        timeout_graceful_shutdown=2,
    )
