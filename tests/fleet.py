"""Gateways and workers as OS processes, and the ledger of what their handlers ran.

The fault suite (``tests/faults/``) starts a gateway and ``jobwire-worker``
processes on 127.0.0.1, enqueues a known set of jobs, injects a fault (a
signal, an endpoint that stops, a database that drops its connections) and
then checks, with :func:`settle`, what at-least-once promises: every accepted
job finished, each ran at least once, a job ran again only if it was in
flight at a fault, and every run counted as an attempt.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from jobwire.client import AsyncClient, JobState

from sqs_support import free_port, moto_command, wait_listening
from support import eventually
from timing import SETTLE_WITHIN

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = "tests.faults.handlers:registry"
PROVIDERS = pytest.mark.parametrize(
    "provider_kind", ["memory", "sqs", "redis", "postgres", "sqlite"]
)
"""Run a scenario on every provider (the ``start_gateway`` fixture follows it)."""


@dataclass(frozen=True)
class Execution:
    """One run of a handler, as ``tests/faults/handlers.py`` recorded it."""

    job_id: str
    attempt: int
    pid: int
    started: float  # time.time() at the handler's start


class Ledger:
    """The executions the worker processes recorded, one file per process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def executions(self) -> dict[str, list[Execution]]:
        """Every recorded run, by job id, in order of start."""
        runs: dict[str, list[Execution]] = defaultdict(list)
        for path in self.directory.glob("*.log"):
            for line in path.read_text().splitlines(keepends=True):
                if line.endswith("\n"):  # a line being written is read next time
                    job_id, attempt, pid, started = line.split()
                    runs[job_id].append(Execution(job_id, int(attempt), int(pid), float(started)))
        for executions in runs.values():
            executions.sort(key=lambda execution: execution.started)
        return runs

    def count(self) -> int:
        """How many runs were recorded so far."""
        return sum(path.read_bytes().count(b"\n") for path in self.directory.glob("*.log"))

    def pids(self) -> set[int]:
        """Worker processes that ran at least one job."""
        return {int(path.stem) for path in self.directory.glob("*.log")}

    async def wait_for(self, runs: int, timeout: float = 30.0) -> None:
        """Wait until at least ``runs`` runs were recorded."""
        await eventually(lambda: self.count() >= runs, timeout)

    async def wait_running(self, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
        """Wait until ``process`` ran a job (a new worker takes a while to import)."""
        await eventually(lambda: process.pid in self.pids(), timeout)


def settings_env(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Gateway settings as ``JOBWIRE_<TABLE>__<KEY>`` variables (JSON unless a string)."""
    return {
        f"JOBWIRE_{table.upper()}__{key.upper()}": value
        if isinstance(value, str)
        else json.dumps(value)
        for table, settings in sections.items()
        for key, value in settings.items()
    }


def _environment() -> dict[str, str]:
    # Read at each start: the moto fixture sets AWS credentials when first used.
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}


@dataclass
class GatewayProcess:
    """A ``jobwire-gateway`` process and the address it listens on."""

    process: subprocess.Popen[str]
    address: str

    def peak_rss_mib(self) -> float:
        """Peak resident set size so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")


class StartGateway(Protocol):
    """The ``start_gateway`` fixture: a gateway process, settings by table."""

    def __call__(self, port: int | None = None, **sections: dict[str, Any]) -> GatewayProcess: ...


class Fleet:
    """Start gateway and worker processes, inject faults, and stop them all at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ledger = Ledger(directory / "ledger")
        self.faults: list[float] = []
        """When each fault was injected (``time.time()``)."""
        self.killed: set[int] = set()
        """Pids of the processes a fault killed or stopped."""
        self._processes: list[subprocess.Popen[Any]] = []

    def gateway(self, port: int | None = None, **sections: Mapping[str, Any]) -> GatewayProcess:
        """Start ``jobwire-gateway`` with these settings on ``port`` (a free one if None)."""
        port = port or free_port()
        command = [sys.executable, "-m", "jobwire.gateway", "--listen", f"127.0.0.1:{port}"]
        with (self.directory / "gateway.log").open("a") as log:
            process = subprocess.Popen(
                [*command, "--log-level", "WARNING"],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**_environment(), **settings_env(sections)},
                cwd=self.directory,
            )
        self._processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # EOF if it cannot start
        if "listening on" not in line:
            process.kill()
            process.wait(10)
            log_text = (self.directory / "gateway.log").read_text()
            raise RuntimeError(f"gateway did not start: {line!r}\n{log_text}")
        return GatewayProcess(process, line.split()[-1])

    def worker(self, address: str, *args: str, concurrency: int = 8) -> subprocess.Popen[bytes]:
        """Start ``jobwire-worker`` on the fault suite's handlers, ``args`` added."""
        command = [sys.executable, "-m", "jobwire.worker", HANDLERS, "--gateway", address]
        with (self.directory / "workers.log").open("a") as log:
            process = subprocess.Popen(
                [*command, "--log-level", "WARNING", "--concurrency", str(concurrency), *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**_environment(), "FAULTS_LEDGER": str(self.ledger.directory)},
                cwd=ROOT,
            )
        self._processes.append(process)
        return process

    def moto(self) -> tuple[subprocess.Popen[bytes], str]:
        """Start a moto server process (an SQS endpoint that can fail); return it and its URL."""
        port = free_port()
        process = subprocess.Popen(
            moto_command(port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_environment(),
        )
        self._processes.append(process)
        wait_listening(port)
        return process, f"http://127.0.0.1:{port}"

    def kill(self, process: subprocess.Popen[Any], signum: int = signal.SIGKILL) -> None:
        """Inject a fault: send ``signum`` (SIGKILL, SIGSTOP...) and note when."""
        self.faults.append(time.time())
        self.killed.add(process.pid)
        process.send_signal(signum)
        if signum == signal.SIGKILL:
            process.wait(10)

    def close(self) -> None:
        """Kill every process still running (a stopped one is woken to die)."""
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.send_signal(signal.SIGCONT)
                process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


OUTCOME = "fault_outcome"
"""Name of the user property that carries a scenario's row of the summary table."""


@dataclass(frozen=True)
class Outcome:
    """One scenario's figures, for the suite's summary table."""

    scenario: str
    provider: str
    jobs: int
    lost: int
    duplicates: int
    max_redelivery_delay: float | None
    note: str = ""

    HEADER = (
        "| scenario | provider | jobs | lost | duplicates | max redelivery delay | notes |",
        "|---|---|---:|---:|---:|---:|---|",
    )

    def row(self) -> str:
        delay = "-" if self.max_redelivery_delay is None else f"{self.max_redelivery_delay:.2f} s"
        return (
            f"| {self.scenario} | {self.provider} | {self.jobs:,} | {self.lost} "
            f"| {self.duplicates} | {delay} | {self.note} |"
        )


async def wait_finished(
    client: AsyncClient, queue: str, count: int, within: float = SETTLE_WITHIN
) -> None:
    """Wait until ``count`` jobs of ``queue`` are completed, dead or cancelled."""

    async def finished() -> bool:
        stats = await client.stats(queue)
        return bool(stats) and stats[0].completed + stats[0].dead + stats[0].cancelled >= count

    await eventually(finished, within, interval=0.05)


async def settle(
    client: AsyncClient,
    fleet: Fleet,
    accepted: Iterable[str],
    *,
    scenario: str,
    provider: str,
    queue: str = "default",
    dead: Iterable[str] = (),
    cancelled: Iterable[str] = (),
    in_flight_at_fault: Callable[[Execution], bool] | None = None,
    note: str = "",
) -> Outcome:
    """Wait for the accepted jobs to finish, then check them against the ledger.

    Every accepted job must be completed (those in ``dead``: dead) and have run
    at least once; each run has its own attempt number, the last one the
    job's ``attempt``; and every run but a job's last must have been in flight
    at a fault: by default, run by a process a fault killed or stopped. Jobs
    in ``cancelled`` must be cancelled, and ran at most once (none if
    cancelled before a worker took them).
    """
    expected = {job_id: JobState.COMPLETED for job_id in accepted}
    expected.update({job_id: JobState.DEAD for job_id in dead})
    expected.update({job_id: JobState.CANCELLED for job_id in cancelled})
    await wait_finished(client, queue, len(expected))
    states = {job.id: job async for job in client.iter_jobs(queue=queue, page_size=1000)}
    runs = fleet.ledger.executions()
    lost = sorted(
        job_id
        for job_id, state in expected.items()
        if job_id not in states
        or states[job_id].state != state
        or not (runs.get(job_id) or state == JobState.CANCELLED)
    )
    assert not lost, f"{len(lost)} jobs lost, e.g. {[states.get(i) for i in lost[:3]]}"
    in_flight = in_flight_at_fault or (lambda execution: execution.pid in fleet.killed)
    duplicates, delays = 0, []
    for job_id, state in expected.items():
        executions = runs.get(job_id, [])
        if state == JobState.CANCELLED:
            assert len(executions) <= 1, f"{job_id}: ran again after its cancellation"
            continue
        attempts = [execution.attempt for execution in executions]
        assert len(set(attempts)) == len(attempts), f"{job_id}: attempts repeated: {attempts}"
        assert max(attempts) == states[job_id].attempt, (
            f"{job_id}: attempts not counted: ran {executions}, now {states[job_id]}"
        )
        if len(executions) == 1 or expected[job_id] == JobState.DEAD:
            continue
        duplicates += 1
        for earlier, later in itertools.pairwise(executions):
            assert in_flight(earlier), f"{job_id} ran again but was not in flight at a fault"
            fault = max((t for t in fleet.faults if t <= later.started), default=earlier.started)
            delays.append(later.started - max(fault, earlier.started))
    return Outcome(
        scenario, provider, len(expected), len(lost), duplicates, max(delays, default=None), note
    )
