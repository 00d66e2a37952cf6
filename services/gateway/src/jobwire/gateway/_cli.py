"""``jobwire-gateway``: run a gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tomllib
from collections.abc import Sequence

from pydantic import ValidationError

from jobwire.gateway.__about__ import __version__
from jobwire.gateway._config import GatewaySettings, load_settings
from jobwire.gateway._config_errors import describe_config_error, locate_key
from jobwire.gateway._logging import configure_logging
from jobwire.gateway._server import Gateway

logger = logging.getLogger("jobwire.gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobwire-gateway",
        description="Serve the jobwire gRPC API (default: memory provider on 127.0.0.1:50051).",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file ([server], [provider], ...)"
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


async def serve(settings: GatewaySettings, config_file: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain; a second signal stops at once.

    Returns the exit code: 0 after a shutdown, 2 for a configuration error
    found at start, 1 for another start-up failure.
    """
    try:
        gateway = Gateway(settings)
        await gateway.start()
    except Exception as error:
        # A start-up failure is a configuration or environment problem (missing
        # extra, unreachable database, port taken): one line says it best.
        logger.debug("start failed", exc_info=error)
        key = getattr(error, "key", None)
        if key is not None:
            print(f"jobwire-gateway: {_at_key(config_file, key)}{error}", file=sys.stderr)
            return 2
        print(f"jobwire-gateway: cannot start: {error}", file=sys.stderr)
        return 1
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    # Tests and supervisors wait for this line to know the port.
    print(f"jobwire gateway listening on {gateway.address}", flush=True)
    await signals.get()
    grace = settings.server.shutdown_grace.total_seconds()
    # Logged, not printed: with --json-logs every stderr line stays one JSON record.
    logger.warning(
        "draining %d jobs (up to %g s), press Ctrl-C again to stop now",
        gateway.in_flight,
        grace,
    )
    stopping = asyncio.ensure_future(gateway.stop())
    again = asyncio.ensure_future(signals.get())
    await asyncio.wait((stopping, again), return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        gateway.stop_now()
    again.cancel()
    await stopping
    return 0


def _at_key(config_file: str | None, key: str) -> str:
    """``FILE:LINE: KEY: `` for a start error about ``key``."""
    return f"{locate_key(key, config_file)}{key}: "


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobwire-gateway`` and ``python -m jobwire.gateway``."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, json_logs=args.json_logs)
    overrides = {"server": {"listen": args.listen}} if args.listen else {}
    try:
        settings = load_settings(args.config, **overrides)
    except (ValidationError, FileNotFoundError, tomllib.TOMLDecodeError) as error:
        for line in describe_config_error(error, args.config, GatewaySettings):
            print(f"jobwire-gateway: {line}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, args.config))


if __name__ == "__main__":
    sys.exit(main())
