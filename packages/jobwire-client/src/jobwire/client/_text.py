"""Plain-text pieces shared by the reprs, the HTML tables and the progress bar.

A leaf module: the models use it for their reprs, so it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

#: Job states in lifecycle order, for summaries.
STATE_ORDER = ("pending", "scheduled", "processing", "completed", "failed", "dead", "cancelled")
#: Characters of a payload, result or message shown before "…".
MAX_TEXT = 120


def state_summary(counts: Mapping[str, int]) -> str:
    """Counts by state in lifecycle order, e.g. "2 completed, 1 dead"; zeros left out."""
    return ", ".join(f"{counts[state]} {state}" for state in STATE_ORDER if counts.get(state))


def count_text(count: int, noun: str) -> str:
    """Counts a noun: "1 job", "2 jobs"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def duration_text(span: timedelta) -> str:
    """A span as "1h30m", "45s" or "0.25s" (what `parse_interval` reads back)."""
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
