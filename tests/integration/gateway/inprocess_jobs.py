"""Handlers the in-process worker tests load by module path."""

from __future__ import annotations

from jobwire.worker import HandlerRegistry, JobContext

registry = HandlerRegistry()


@registry.handler("add")
def add(ctx: JobContext) -> int:
    """Add the payload's numbers."""
    return int(ctx.payload["a"]) + int(ctx.payload["b"])
