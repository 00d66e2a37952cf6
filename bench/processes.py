"""Gateway and worker processes for benchmarks, on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")])
    return env


@contextmanager
def gateway(
    *args: str, launcher: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``jobwire-gateway`` on a free port; yield the process and its address.

    ``launcher`` goes between the interpreter and ``-m jobwire.gateway`` (a
    profiling wrapper, say).
    """
    with tempfile.TemporaryDirectory() as cwd:
        command = [
            sys.executable,
            *launcher,
            "-m",
            "jobwire.gateway",
            "--listen",
            "127.0.0.1:0",
        ]
        with subprocess.Popen(
            [*command, "--log-level", "WARNING", *args],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=cwd,
        ) as process:
            try:
                assert process.stdout is not None
                line = process.stdout.readline()
                if "listening on" not in line:
                    raise RuntimeError(f"gateway did not start: {line!r}")
                yield process, line.split()[-1]
            finally:
                process.terminate()
                process.wait(30)


@contextmanager
def worker(
    address: str, *args: str, launcher: Sequence[str] = ()
) -> Iterator[subprocess.Popen[str]]:
    """Run ``jobwire-worker bench_handlers:registry`` against ``address``.

    ``launcher`` goes between the interpreter and ``-m jobwire.worker``.
    """
    command = [sys.executable, *launcher, "-m", "jobwire.worker", "bench_handlers:registry"]
    with subprocess.Popen(
        [*command, "--gateway", address, "--log-level", "WARNING", *args], env=_env(), text=True
    ) as process:
        try:
            yield process
        finally:
            process.terminate()
            process.wait(30)
