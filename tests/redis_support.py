"""Redis for tests: a ``redis-server`` process of the test session's own.

It listens on a free 127.0.0.1 port, keeps its files in its own temporary
directory, and is stopped by its PID. The contract suite shares one per test
process (xdist: one per worker), emptied before each test; fault scenarios
start their own, with AOF when they kill Redis on purpose.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from sqs_support import free_port, wait_listening


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with its own directory.

    Args:
        appendonly: keep an AOF (``appendfsync everysec``), so a restart keeps the jobs.
        directory: where its files go; a new temporary directory if None.
    """

    def __init__(self, *, appendonly: bool = False, directory: Path | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self._own = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="jobwire-redis-"))
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, after :meth:`kill`, on the same port and files)."""
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # A test process that dies without its teardown (SIGKILL, a fatal error)
        # takes its Redis with it: the kernel kills the server when it is orphaned.
        if shutil.which("setpriv") is not None:
            command = ["setpriv", "--pdeathsig", "KILL", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_listening(self.port)

    def kill(self) -> None:
        """SIGKILL the server, as a crash: what was not written to its files is gone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def flush(self) -> None:
        """Delete every key."""
        with redis.Redis(port=self.port) as client:
            client.flushall()

    def stop(self) -> None:
        """Stop the server and remove its directory if it made it."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None
        if self._own:
            shutil.rmtree(self.directory, ignore_errors=True)
