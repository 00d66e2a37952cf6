"""``jobwire-worker``: run the handlers of a registry against a gateway.

Usage::

    jobwire-worker myapp.jobs:registry --gateway 127.0.0.1:50051 --concurrency 8
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from pythonjsonlogger.json import JsonFormatter

from jobwire.worker import _metrics
from jobwire.worker.__about__ import __version__
from jobwire.worker._errors import ConnectionFailedError
from jobwire.worker._registry import TargetError, load_registry
from jobwire.worker._serving import HANDLER_THREAD_PREFIX
from jobwire.worker._tls import TLSConfig
from jobwire.worker._worker import Worker

_logger = logging.getLogger("jobwire.worker")

EXIT_USAGE = 2
EXIT_FATAL = 1


def json_formatter() -> logging.Formatter:
    """One JSON object per line, with the record's ``extra`` fields (job id, ...) as keys."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobwire-worker",
        description="Run the job handlers of a HandlerRegistry against a jobwire gateway.",
    )
    parser.add_argument(
        "target",
        metavar="MODULE:ATTRIBUTE",
        help="the HandlerRegistry to serve, e.g. myapp.jobs:registry",
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("JOBWIRE_GATEWAY", "127.0.0.1:50051"),
        help="gateway address (default: $JOBWIRE_GATEWAY or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--queue",
        "-q",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="queue to take jobs from; repeat for several (default: default)",
    )
    parser.add_argument(
        "--concurrency", "-c", type=_positive_int, default=8, help="handlers running at once"
    )
    parser.add_argument(
        "--max-in-flight",
        type=_positive_int,
        help="jobs leased at once (default: 4 x the concurrency; lower for long jobs)",
    )
    parser.add_argument("--worker-id", help="stable worker id (default: host-pid-random)")
    parser.add_argument(
        "--job-type",
        action="append",
        dest="job_types",
        metavar="TYPE",
        help="only take jobs of this type; repeat for several (default: all registered)",
    )
    parser.add_argument(
        "--lease-duration", type=_positive_float, metavar="SECONDS", help="lease to ask for"
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long SIGTERM waits for running jobs (default: 30)",
    )
    parser.add_argument("--token", default=None, help="bearer token (default: $JOBWIRE_TOKEN)")
    parser.add_argument(
        "--tls", action="store_true", help="connect over TLS (implied by the --tls-* options)"
    )
    parser.add_argument("--tls-ca", metavar="PEM", help="CA that signed the gateway's certificate")
    parser.add_argument("--tls-cert", metavar="PEM", help="worker certificate, for mutual TLS")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log level (default: INFO)",
    )
    parser.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there (needs the `metrics` extra)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _tls(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS settings the options ask for, or None for plaintext."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    return TLSConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _configure_logging(level: str, json_logs: bool) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jobwire-worker`` command.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 after a shutdown, 1 when the gateway rejected the
        worker, 2 for usage errors (including a target that is not a registry).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.target)
    except TargetError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    _configure_logging(args.log_level, args.json_logs)
    if args.metrics_listen:
        try:
            _metrics.serve(args.metrics_listen)
        except (ValueError, RuntimeError, OSError) as exc:
            sys.stderr.write(f"{parser.prog}: error: --metrics-listen: {exc}\n")
            return EXIT_USAGE
    try:
        worker = Worker(
            args.gateway,
            registry=registry,
            queues=args.queues or ("default",),
            concurrency=args.concurrency,
            max_in_flight=args.max_in_flight,
            worker_id=args.worker_id,
            job_types=args.job_types,
            lease_duration=args.lease_duration,
            token=args.token,
            tls=_tls(args),
            shutdown_timeout=args.shutdown_timeout,
        )
        worker.run_sync()
    except ValueError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    except ConnectionFailedError as exc:
        _logger.error("gateway %s rejected the worker: %s", args.gateway, exc)
        return EXIT_FATAL
    _exit_if_handler_threads_linger()
    return 0


def _exit_if_handler_threads_linger() -> None:
    # Sync handlers abandoned at shutdown (timeout, second signal) cannot be
    # interrupted, and the interpreter would wait for their threads at exit:
    # the worker has already let their jobs go, so do not wait.
    lingering = [
        t
        for t in threading.enumerate()
        if t.name.startswith(HANDLER_THREAD_PREFIX) and t.is_alive()
    ]
    if lingering:
        _logger.warning("exiting with %d sync handlers still running", len(lingering))
        logging.shutdown()
        os._exit(0)
