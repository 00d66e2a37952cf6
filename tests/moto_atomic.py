"""moto's SQS made atomic per request, as SQS itself is.

moto's server handles each HTTP request on a thread of its own, and its SQS
backend changes queues without a lock: two concurrent ``DeleteMessageBatch``
calls each rebuild the queue's message list from the same snapshot, and the
last one to finish puts back the messages the other deleted (seen here: 10 of
300 messages still in the queue after every delete succeeded). Two concurrent
``ReceiveMessage`` calls can likewise hand out one message twice. Real SQS
does neither, and a gateway under test must not be blamed for it, so every
SQS request runs under one lock here; a long poll gives it up while it waits.

Used by the in-process moto server of the test session (:func:`install`) and
by moto server processes (``python tests/moto_atomic.py -H 127.0.0.1 -p N``).
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

_LOCK = threading.Lock()
_installed = False


def install() -> None:
    """Serialize moto's SQS requests in this process (idempotent)."""
    global _installed
    if _installed:
        return
    from moto.sqs.models import Queue
    from moto.sqs.responses import SQSResponse

    call_action = SQSResponse.call_action
    wait_for_messages = Queue.wait_for_messages

    @functools.wraps(call_action)
    def locked_call_action(self: SQSResponse) -> Any:
        with _LOCK:
            return call_action(self)

    @functools.wraps(wait_for_messages)
    def unlocked_wait(self: Queue, timeout: int) -> None:
        # Only ever called inside a ReceiveMessage, which holds the lock.
        _LOCK.release()
        try:
            wait_for_messages(self, timeout)
        finally:
            _LOCK.acquire()

    SQSResponse.call_action = locked_call_action  # type: ignore[method-assign,assignment]
    Queue.wait_for_messages = unlocked_wait  # type: ignore[method-assign]
    _installed = True


def main() -> None:
    """Run ``moto.server`` with atomic SQS requests; arguments as ``moto_server``'s."""
    install()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
