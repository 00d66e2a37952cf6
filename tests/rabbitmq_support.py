"""RabbitMQ for tests: the machine's broker at 127.0.0.1:5672, a vhost of the session's own.

``rabbitmqctl`` boots an Erlang VM per call (about a second each, more under
load), so a test session (one per xdist worker) creates one vhost,
``jobwire_test_<pid>``, and deletes it at its end; tests keep apart by a
queue-name prefix of their own (``provider.queue_prefix``), which is faster
than purging or deleting queues between tests.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess

import pytest

HOST, PORT = "127.0.0.1", 5672
_CTL_TIMEOUT = 120


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q ARGS``; return its output (raises on failure)."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        capture_output=True,
        text=True,
        timeout=_CTL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def reachable() -> bool:
    """Whether something accepts connections on the AMQP port."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


class RabbitVhost:
    """A vhost on the machine's broker, guest allowed everything in it."""

    def __init__(self, name: str | None = None) -> None:
        if shutil.which("rabbitmqctl") is None or not reachable():
            message = f"no RabbitMQ on {HOST}:{PORT} (see scripts/services.py)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.name = name or f"jobwire_test_{os.getpid()}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self._prefixes = itertools.count(1)
        self._of_test: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{PORT}/{self.name}"

    def prefix_of(self, test: str) -> str:
        """The queue-name prefix of ``test`` (a node id): the same for all its gateways,
        used by no other test of the session."""
        prefix = self._of_test.get(test)
        if prefix is None:
            prefix = self._of_test[test] = f"t{next(self._prefixes)}."
        return prefix

    def close_connections(self, reason: str = "fault test") -> None:
        """Close every client connection to the vhost, as a broker restart would."""
        rabbitmqctl("close_all_connections", "-p", self.name, reason)

    def queues(self) -> dict[str, int]:
        """Each queue of the vhost and the messages ready in it."""
        out = rabbitmqctl("list_queues", "-p", self.name, "name", "messages_ready")
        rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
        return {name: int(count) for name, count in rows if count.isdigit()}

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)
