"""Building blocks of the gateway's settings: durations, strict sections, database URLs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

MiB = 1024 * 1024
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""What a queue may be called: 1-128 letters, digits, '.', '_', ':' or '-'."""
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _span(value: object) -> object:
    # Environment variables arrive as text: accept "30", "30s", "250ms", "5m",
    # "1h", "1d" as well as what pydantic takes (numbers, ISO 8601 "PT30S").
    if isinstance(value, str) and (match := _SPAN.match(value)):
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    return value


Span = Annotated[timedelta, BeforeValidator(_span)]
"""A duration: seconds as a number, "30s", "250ms", "5m", "1h", "1d" or ISO 8601."""


class Section(BaseModel):
    """A table of the configuration file."""

    # A typo in a key must fail at start, naming the key.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


_DATABASE_URL = re.compile(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://")


def check_database_url(value: str) -> str:
    """Return ``value`` if it is a database URL the gateway can use, else raise ValueError."""
    if not _DATABASE_URL.match(value):
        raise ValueError(
            "expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB, "
            f"got {value.split('://')[0]!r}://…"
        )
    return value
