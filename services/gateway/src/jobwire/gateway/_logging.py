"""Log output of the ``jobwire-gateway`` command: text, or one JSON object per line."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter


def json_formatter() -> logging.Formatter:
    """One JSON object per line; job transitions add job_id, job_type, queue, attempt, worker_id."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(level: str, *, json_logs: bool) -> None:
    """Send the root logger's records at ``level`` and above to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        json_formatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
