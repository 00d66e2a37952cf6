"""The jobwire commands as real OS processes: start, read their output, stop them by PID."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without ``JOBWIRE_*`` overrides, unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(module: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` to its end and return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Process:
    """A running ``python -m MODULE``; its stdout and stderr are read line by line."""

    def __init__(self, module: str, *args: str, cwd: Path, **env: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._pumps = [
            threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr))
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._lines.put((name, line.rstrip("\n")))

    def wait_for(self, text: str, stream: str = "stderr", timeout: float = 60) -> str:
        """Return the first line of ``stream`` containing ``text`` (seen before or after now)."""
        seen = self.stdout if stream == "stdout" else self.stderr
        for line in seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None and self._lines.empty():
                    break
                continue
            (self.stdout if name == "stdout" else self.stderr).append(line)
            if name == stream and text in line:
                return line
        raise AssertionError(
            f"{text!r} not seen on {stream} (exit code {self.popen.poll()}); "
            f"stdout: {self.stdout}; stderr: {self.stderr}"
        )

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the process, by its PID."""
        os.kill(self.popen.pid, signum)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the exit and return the exit code (all output is read by then)."""
        code = self.popen.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        """Read the output to its end, then close the pipes."""
        for pump in self._pumps:
            pump.join(30)
        while not self._lines.empty():
            name, line = self._lines.get_nowait()
            (self.stdout if name == "stdout" else self.stderr).append(line)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._close()


@contextmanager
def started(module: str, *args: str, cwd: Path, **env: str) -> Iterator[Process]:
    """A :class:`Process` killed (by its PID) when the block ends, whatever happened."""
    process = Process(module, *args, cwd=cwd, **env)
    try:
        yield process
    finally:
        process.kill()


@contextmanager
def gateway(*args: str, cwd: Path, **env: str) -> Iterator[tuple[Process, str]]:
    """A ``jobwire-gateway`` process and its address, once it listens (port 0 by default)."""
    listen = () if "--listen" in args or "--config" in args else ("--listen", "127.0.0.1:0")
    with started("jobwire.gateway", *listen, *args, cwd=cwd, **env) as process:
        line = process.wait_for("listening on", stream="stdout")
        yield process, line.split()[-1]
