"""``jobwire-gateway``: run a gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from jobwire.gateway.__about__ import __version__
from jobwire.gateway._config import GatewaySettings, load_settings
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


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (a second signal is not needed)."""
    try:
        gateway = Gateway(settings)
        await gateway.start()
    except Exception as error:
        # A start-up failure is a configuration or environment problem (missing
        # extra, unreachable database, port taken): one line says it best.
        logger.debug("start failed", exc_info=error)
        raise SystemExit(f"jobwire-gateway: cannot start: {error}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Tests and supervisors wait for this line to know the port.
    print(f"jobwire gateway listening on {gateway.address}", flush=True)
    await stop.wait()
    logger.info("shutting down: draining workers for up to %s", settings.server.shutdown_grace)
    await gateway.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobwire-gateway`` and ``python -m jobwire.gateway``."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, json_logs=args.json_logs)
    overrides = {"server": {"listen": args.listen}} if args.listen else {}
    try:
        settings = load_settings(args.config, **overrides)
    except (ValidationError, FileNotFoundError) as error:
        print(f"jobwire-gateway: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
