"""How values read on a page: ages, times, payloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Longest payload or result shown in full; a larger one shows its size only.
MAX_SHOWN = 64 * 1024


def age(span: timedelta | None) -> str:
    """A short human span: "0 s", "42 s", "3 min 5 s", "2 h 4 min", "3 d 1 h"."""
    if span is None:
        return ""
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{max(0, seconds)} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(moment: datetime | None) -> str:
    """A time in UTC to the second, "" for none."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    """A time as ISO 8601, for `<time datetime=...>`."""
    return "" if moment is None else moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Body:
    """A payload or result as a page shows it.

    `kind` is "json" (pretty `text`), "text", "binary" (size and content type
    only) or "empty".
    """

    kind: str
    size: int
    content_type: str
    text: str = ""


def body(raw: bytes | None, content_type: str) -> Body:
    """How to show `raw`: JSON pretty-printed, text as is, anything else by its size."""
    data = raw or b""
    if not data:
        return Body("empty", 0, content_type)
    if len(data) > MAX_SHOWN:
        return Body("binary", len(data), content_type)
    if content_type in ("", "application/json") or content_type.endswith("+json"):
        try:
            value = json.loads(data)
        except ValueError:
            pass
        else:
            return Body("json", len(data), content_type, json.dumps(value, indent=2))
    if content_type.startswith("text/"):
        try:
            return Body("text", len(data), content_type, data.decode())
        except UnicodeDecodeError:
            pass
    return Body("binary", len(data), content_type)
