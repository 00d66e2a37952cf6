"""Where a job's time goes: CPU per job of the gateway and the worker, and their profiles.

The workload is ``core``'s (memory provider, worker concurrency 8, no-op jobs):
end-to-end (a) queued then drained, (b) enqueued while the worker runs, and
enqueue→start latency on an idle worker, one job at a time. For each phase it
prints the CPU time per job of the gateway, the worker and the client (this
process), read from ``/proc/<pid>/stat`` (every thread; 10 ms ticks, so keep
``--jobs`` in the thousands), as the median of ``--repeat`` unprofiled runs.

Then, unless ``--profiler none``, one more run with a profiler on both
processes during the phases only (start-up and warm-up excluded):

- ``py-spy`` (default): samples the running threads of each process from
  outside (``--native`` adds the C frames of grpc, protobuf and CPython).
  Printed per process: the cost centres (each sample charged to the first
  frame that is not CPython or libc, from the leaf up), the jobwire function
  closest to the leaf, and the top functions by own and by cumulative share.
  The raw collapsed stacks are kept in ``--out`` (speedscope and
  flamegraph.pl read them);
- ``cprofile``: deterministic, event-loop thread only, slower (the figures
  are skewed towards many small calls) but counts calls: printed with calls
  per job. Stats files are kept in ``--out`` (``python -m pstats FILE``).

Run: ``python3 -m hatch run bench:profile`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import re
import runpy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from jobwire.client import AsyncClient

from core import drain_rate
from measures import flowing_rate, latency, wait_completed, wait_worker
from processes import gateway, worker

HERE = Path(__file__).resolve()
QUEUES = ("warmup", "drain", "flow", "latency")
WARMUP_JOBS = 1000
PROCESSES = ("gateway", "worker")
CPROFILE_CHILD = "--cprofile-child"


# Measuring ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of ``pid``'s main thread so far."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches:" in line:
            total += int(line.split()[1])
    return total


@dataclass
class Phase:
    """One workload phase of one run: CPU seconds per process and what it measured."""

    name: str
    jobs: int
    cpu: dict[str, float] = field(default_factory=dict)
    switches: dict[str, int] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


async def measured(
    name: str,
    jobs: int,
    pids: dict[str, int],
    body: Callable[[], Awaitable[dict[str, float]]],
) -> Phase:
    """Run ``body`` and record the CPU time each process spent meanwhile."""
    phase = Phase(name, jobs)
    before = {p: cpu_seconds(pid) for p, pid in pids.items()}
    switched = {p: context_switches(pid) for p, pid in pids.items()}
    client_before = time.process_time()
    phase.figures = await body()
    phase.cpu = {p: cpu_seconds(pid) - before[p] for p, pid in pids.items()}
    phase.cpu["client"] = time.process_time() - client_before
    phase.switches = {p: context_switches(pid) - switched[p] for p, pid in pids.items()}
    return phase


# Profilers ------------------------------------------------------------------


class Profiler:
    """Profiles the gateway and the worker while a ``with profiling(...)`` block runs."""

    def launcher(self, process: str) -> Sequence[str]:
        """What goes between the interpreter and ``-m MODULE`` for ``process``."""
        return ()

    @contextmanager
    def profiling(self, label: str, pids: dict[str, int]) -> Iterator[None]:
        yield

    def report(self, label: str, jobs: int, cpu_per_job: dict[str, float], top: int) -> str:
        return ""


class PySpy(Profiler):
    """``py-spy record`` attached from outside to each process."""

    def __init__(self, out: Path, rate: int, native: bool) -> None:
        self.out, self.rate, self.native = out, rate, native

    def _file(self, label: str, process: str) -> Path:
        return self.out / f"{label}-{process}.txt"

    @contextmanager
    def profiling(self, label: str, pids: dict[str, int]) -> Iterator[None]:
        spy = Path(sys.executable).with_name("py-spy")
        spies = []
        try:
            for process, pid in pids.items():
                command = [
                    str(spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--function",  # one frame per function, not per line
                    "--output",
                    str(self._file(label, process)),
                    *(["--native"] if self.native else ["--nonblocking"]),
                ]
                spies.append(
                    subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                )
            time.sleep(1.0)  # attached and sampling
            for spy_process in spies:
                if spy_process.poll() is not None:
                    output = spy_process.stdout.read() if spy_process.stdout else b""
                    raise RuntimeError(f"py-spy failed: {output.decode(errors='replace')}")
            yield
        finally:
            for spy_process in spies:
                spy_process.send_signal(signal.SIGINT)
            for spy_process in spies:
                spy_process.communicate(timeout=60)

    def report(self, label: str, jobs: int, cpu_per_job: dict[str, float], top: int) -> str:
        lines = []
        for process in PROCESSES:
            path = self._file(label, process)
            if not path.exists():
                lines.append(f"\n{process}: no profile written ({path})")
                continue
            stacks, waiting = read_collapsed(path)
            lines.append(describe_samples(process, stacks, cpu_per_job.get(process), top))
            lines.append(f"  ({waiting} samples of waiting threads left out)")
            lines.append(f"  raw stacks: {path}")
        return "\n".join(lines)


class CProfile(Profiler):
    """cProfile inside each process, switched on and off by SIGUSR1 and SIGUSR2."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def _file(self, label: str, process: str) -> Path:
        return self.out / f"{label}-{process}.prof"

    def launcher(self, process: str) -> Sequence[str]:
        return (str(HERE), CPROFILE_CHILD, str(self.out / f"{process}.prof"))

    @contextmanager
    def profiling(self, label: str, pids: dict[str, int]) -> Iterator[None]:
        for process, pid in pids.items():
            (self.out / f"{process}.prof").unlink(missing_ok=True)
            os.kill(pid, signal.SIGUSR1)
        try:
            yield
        finally:
            for pid in pids.values():
                os.kill(pid, signal.SIGUSR2)
            for process in pids:
                dumped = self.out / f"{process}.prof"
                for _ in range(300):
                    if dumped.exists():
                        break
                    time.sleep(0.05)
                dumped.replace(self._file(label, process))

    def report(self, label: str, jobs: int, cpu_per_job: dict[str, float], top: int) -> str:
        import pstats

        lines = []
        for process in PROCESSES:
            path = self._file(label, process)
            stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
            total = sum(tt for _, _, tt, _, _ in stats.values()) or 1.0
            # (function, calls, own seconds, cumulative seconds)
            rows: list[tuple[str, int, float, float]] = [
                (short((file, name)), nc, tt, ct)
                for (file, _, name), (_, nc, tt, ct, _) in stats.items()
            ]
            lines.append(f"\n{process} (cProfile, event-loop thread, {total:.2f} s profiled)")
            for title, cumulative in (("own time", False), ("cumulative time", True)):
                lines.append(f"  top by {title}: share, calls per job, function")
                ranked = sorted(rows, key=lambda r: r[3] if cumulative else r[2], reverse=True)
                for name, calls, own, inclusive in ranked[:top]:
                    seconds = inclusive if cumulative else own
                    lines.append(f"    {seconds / total:6.1%}  {calls / jobs:7.2f}  {name}")
            lines.append(f"  stats: {path} (python -m pstats)")
        return "\n".join(lines)


def cprofile_child(argv: list[str]) -> None:
    """Run ``-m MODULE ARGS`` with cProfile on between SIGUSR1 and SIGUSR2, dumped to OUT.

    The command line is ``profile_hot_path.py --cprofile-child OUT -m MODULE ARGS``.
    """
    out, dash_m, module, *args = argv
    assert dash_m == "-m", argv
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.clear()  # each profiled block on its own
        profiler.enable()

    def dump(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        partial = f"{out}.partial"
        profiler.dump_stats(partial)
        os.replace(partial, out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# Reading py-spy's collapsed stacks ------------------------------------------

Frame = tuple[str, str]  # (function, file or library)
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


# With --native, py-spy counts a thread blocked in a system call as running:
# these stacks are threads waiting (the event loop's and grpc's epoll, idle
# thread pools), not CPU spent.
_WAITS = {"epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect", "nanosleep"}
_WAITS_IN = {"_queue_SimpleQueue_get_impl", "PyThread_acquire_lock_timed", "acquire_timed"}


def is_waiting(frames: Sequence[Frame]) -> bool:
    """Whether a sample shows a thread waiting rather than running."""
    name, file = frames[-1]
    if name in _WAITS or "pthread_cond" in name or "sem_wait" in name:
        return True
    return "libc" in file and any(frame[0] in _WAITS_IN for frame in frames[-6:])


def read_collapsed(path: Path) -> tuple[Counter[tuple[Frame, ...]], int]:
    """Running stacks (root first) with their sample counts, and the waiting samples."""
    stacks: Counter[tuple[Frame, ...]] = Counter()
    waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = []
        for text in stack.split(";"):
            match = _FRAME.match(text)
            frames.append((match["name"], match["file"]) if match else (text, ""))
        if is_waiting(frames):
            waiting += int(count)
        else:
            stacks[tuple(frames)] += int(count)
    return stacks, waiting


# Frames charged to their caller when finding a sample's cost centre: the
# interpreter, libc, C++ runtime, CPython's C modules, and stdlib helpers
# (dataclass-generated code, contextlib, uuid ...).
_RUNTIME_FILES = re.compile(
    r"libpython|libc[.-]|ld-linux|libm[.]|libstdc|\[vdso\]|\[unknown\]|^python3|"
    r"^<string>$|^<frozen|^(contextlib|uuid|enum|abc|_weakrefset|copy|typing|functools|"
    r"dataclasses|weakref|inspect|types)\.py$|(?<!asyncio)module\.c$|\.h$"
)
_RUNTIME_NAMES = re.compile(r"^(0x[0-9a-f]+|_?Py\w+|_PyEval\w*|\w+_vectorcall\w*)$")

# (cost centre, test on the frame's function and file), first match wins.
CENTRES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("gRPC C core and Cython (cygrpc)", lambda n, f: "cygrpc" in f or "grpc_core" in n),
    ("gRPC Python layer (grpc.aio)", lambda n, f: f.startswith("grpc/") or "/grpc/" in f),
    (
        "protobuf (upb: parse, serialise, build messages)",
        lambda n, f: "protobuf" in f or "_message.abi3" in f or "upb" in n.lower(),
    ),
    ("prometheus_client metrics", lambda n, f: "prometheus_client" in f),
    ("logging", lambda n, f: f.startswith("logging/") or "/logging/" in f),
    ("JSON (payloads, results)", lambda n, f: f.startswith("json/") or "/json/" in f),
    ("jobwire gateway: memory provider", lambda n, f: "gateway/providers" in f),
    ("jobwire gateway: worker stream session", lambda n, f: "servicers/worker" in f),
    ("jobwire gateway: queue servicer", lambda n, f: "servicers/queue" in f),
    ("jobwire gateway: validation, models, metrics calls", lambda n, f: "gateway/" in f),
    ("jobwire worker SDK", lambda n, f: "jobwire/worker" in f or f.startswith("worker/")),
    ("jobwire client SDK", lambda n, f: "jobwire/client" in f or f.startswith("client/")),
    ("benchmark handlers", lambda n, f: "bench_handlers" in f),
    (
        "asyncio event loop",
        lambda n, f: "asyncio" in f or "selectors" in f or "selectmodule" in f,
    ),
    ("threads, queues", lambda n, f: f.startswith(("threading", "queue", "concurrent"))),
]


def _is_runtime(frame: Frame) -> bool:
    name, file = frame
    if not file:
        return bool(_RUNTIME_NAMES.match(name))
    return bool(_RUNTIME_FILES.search(file)) and "selectmodule" not in file


def cost_centre(stack: tuple[Frame, ...]) -> str:
    """The cost centre of the first frame from the leaf that is not runtime plumbing."""
    for frame in reversed(stack):
        if _is_runtime(frame):
            continue
        for centre, test in CENTRES:
            if test(*frame):
                return centre
        return f"other: {short(frame)}"
    return "CPython runtime (no caller identified)"


# Entry points at the root of every stack: they own nothing.
_ENTRY = re.compile(r"(_cli|__main__|/_worker)\.py$")


def jobwire_owner(stack: tuple[Frame, ...]) -> str:
    """The jobwire function closest to the leaf, or what runs outside jobwire code."""
    for frame in reversed(stack):
        file = frame[1]
        if ("jobwire/" in file or re.match(r"^(gateway|worker|client)/", file)) and not (
            _ENTRY.search(file)
        ):
            return short(frame)
    return f"(no jobwire frame) {cost_centre(stack)}"


def short(frame: Frame) -> str:
    name, file = frame
    file = re.sub(r"^.*/site-packages/", "", file)
    file = re.sub(r"^.*/(services|packages)/[^/]+/src/", "", file)
    return f"{name} ({file})" if file else name


def describe_samples(
    process: str, stacks: Counter[tuple[Frame, ...]], cpu_per_job: float | None, top: int
) -> str:
    total = sum(stacks.values())
    scale = f", of {cpu_per_job * 1e6:.0f} µs CPU per job" if cpu_per_job else ""
    lines = [f"\n{process}: {total} samples{scale}"]
    if not total:
        return lines[0]

    def table(title: str, counts: Counter[str], limit: int) -> None:
        lines.append(f"  {title}:")
        for key, count in counts.most_common(limit):
            share = count / total
            micros = f"{share * cpu_per_job * 1e6:7.1f} µs" if cpu_per_job else ""
            lines.append(f"    {share:6.1%} {micros}  {key}")

    centres: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    for stack, count in stacks.items():
        centres[cost_centre(stack)] += count
        owners[jobwire_owner(stack)] += count
        own[short(stack[-1])] += count
        for name in {short(frame) for frame in stack}:
            cumulative[name] += count
    table("cost centres (share, µs per job)", centres, len(centres))
    table("nearest jobwire function", owners, top)
    table("own time", own, top)
    table("cumulative time", cumulative, top)
    return "\n".join(lines)


# The workload ---------------------------------------------------------------


async def warm_up(client: AsyncClient) -> None:
    await asyncio.gather(*(client.enqueue("noop", {}, queue="warmup") for _ in range(WARMUP_JOBS)))
    await wait_completed(client, "warmup", WARMUP_JOBS, within=60)


async def one_run(args: argparse.Namespace, profiler: Profiler) -> list[Phase]:
    queue_args = [arg for queue in QUEUES for arg in ("--queue", queue)]
    with ExitStack() as stack:
        gateway_process, address = stack.enter_context(
            gateway(*args.gateway_args, launcher=profiler.launcher("gateway"))
        )
        worker_process = stack.enter_context(
            worker(
                address,
                "--concurrency",
                "8",
                *queue_args,
                *args.worker_args,
                launcher=profiler.launcher("worker"),
            )
        )
        pids = {"gateway": gateway_process.pid, "worker": worker_process.pid}
        async with AsyncClient(address) as client:
            await wait_worker(client, "latency")
            await warm_up(client)
            jobs, samples = args.jobs, args.samples

            async def drained() -> dict[str, float]:
                return {"jobs/s": await drain_rate(client, jobs)}

            async def flowing() -> dict[str, float]:
                return {"jobs/s": await flowing_rate(client, jobs, chunk=500, within=120)}

            async def idle() -> dict[str, float]:
                p50, p99 = await latency(client, samples)
                return {"p50 ms": p50, "p99 ms": p99}

            phases = []
            if "end-to-end" in args.workloads:
                with profiler.profiling("end-to-end", pids):
                    phases.append(await measured("end-to-end (a) drained", jobs, pids, drained))
                    phases.append(await measured("end-to-end (b) flowing", jobs, pids, flowing))
            if "latency" in args.workloads:
                with profiler.profiling("latency", pids):
                    phases.append(await measured("latency, idle worker", samples, pids, idle))
            return phases


def _figure(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def summary(runs: list[list[Phase]]) -> str:
    lines = [
        "| phase | jobs | figures | CPU µs/job gateway | worker | client "
        "| ctx switches/job gw, wk |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for index, phase in enumerate(runs[0]):
        same = [run[index] for run in runs]

        def med(process: str, same: list[Phase] = same) -> float:
            return statistics.median(p.cpu[process] / p.jobs * 1e6 for p in same)

        figures = ", ".join(
            f"{key} {_figure(statistics.median(p.figures[key] for p in same))}"
            for key in phase.figures
        )
        switches = ", ".join(
            f"{statistics.median(p.switches[proc] / p.jobs for p in same):.2f}"
            for proc in PROCESSES
        )
        lines.append(
            f"| {phase.name} | {phase.jobs:,} | {figures} | {med('gateway'):,.0f} | "
            f"{med('worker'):,.0f} | {med('client'):,.0f} | {switches} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per end-to-end phase")
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3, help="unprofiled runs (medians)")
    parser.add_argument("--profiler", choices=["py-spy", "cprofile", "none"], default="py-spy")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--no-native", dest="native", action="store_false", help="py-spy: Python frames only"
    )
    parser.add_argument("--top", type=int, default=15, help="rows per profile table")
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=["end-to-end", "latency"],
        default=["end-to-end", "latency"],
    )
    parser.add_argument("--out", type=Path, help="where profiles go (default: a temporary dir)")
    parser.add_argument(
        "--gateway-arg",
        dest="gateway_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra jobwire-gateway argument (repeatable)",
    )
    parser.add_argument(
        "--worker-arg",
        dest="worker_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra jobwire-worker argument (repeatable)",
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="jobwire-profile-"))
    out.mkdir(parents=True, exist_ok=True)

    runs = [asyncio.run(one_run(args, Profiler())) for _ in range(args.repeat)]
    if runs:
        print(f"\nCPU per job, median of {args.repeat} unprofiled runs (worker concurrency 8)\n")
        print(summary(runs))
    if args.profiler == "none":
        return
    profiler: Profiler = (
        PySpy(out, args.rate, args.native) if args.profiler == "py-spy" else CProfile(out)
    )
    profiled = asyncio.run(one_run(args, profiler))
    print(f"\nProfiled run ({args.profiler}; its own timings are perturbed)\n")
    print(summary([profiled]))
    for label in args.workloads:
        phases = [p for p in profiled if p.name.startswith(label)] or profiled
        jobs = sum(p.jobs for p in phases)
        # Shares of the profile scaled by the unprofiled runs' CPU per job.
        clean = [p for run in runs for p in run if p.name.startswith(label)]
        cpu_per_job = (
            {
                process: sum(p.cpu[process] for p in clean) / sum(p.jobs for p in clean)
                for process in PROCESSES
            }
            if clean
            else {}
        )
        print(f"\n## {label}: {jobs:,} jobs")
        print(profiler.report(label, jobs, cpu_per_job, args.top))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CPROFILE_CHILD:
        cprofile_child(sys.argv[2:])
    else:
        main()
