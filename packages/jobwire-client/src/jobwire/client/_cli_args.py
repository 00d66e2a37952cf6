"""Value types of the ``jobwire`` command's options: one clear message per bad value."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any


def json_payload(text: str) -> Any:
    """An argparse type: the payload, parsed; a clear message when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"the payload is not valid JSON ({error.msg} at line {error.lineno} column "
            f'{error.colno}); quote it for the shell, e.g. \'{{"to": "ada@example.com"}}\''
        ) from None


def aware_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its offset (``2026-12-24T09:00:00Z``)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time with its offset, e.g. 2026-12-24T09:00:00Z or "
            f"2026-12-24T10:00:00+01:00; got {text!r}"
        )
    return value
