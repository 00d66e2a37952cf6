"""The gateway-wide cap on long-lived streams (``server.max_streams``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from jobwire.gateway._errors import ResourceExhaustedError


class StreamSlots:
    """Counts open worker, watch and enqueue streams and refuses one past the limit.

    Each stream holds tasks, a provider consumer or a watch until it ends, so
    without a cap a client could open streams until the gateway runs out of
    memory. Unary calls are short and bounded by message size; they are not counted.

    Args:
        limit: Most streams open at once.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.open = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for the ``with`` block.

        Raises:
            ResourceExhaustedError: ``limit`` streams are already open.
        """
        if self.open >= self._limit:
            raise ResourceExhaustedError(
                f"the gateway already serves {self._limit} streams (server.max_streams); "
                "retry later or connect to another gateway",
                limit=str(self._limit),
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
