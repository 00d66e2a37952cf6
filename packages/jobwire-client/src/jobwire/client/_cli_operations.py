"""``jobwire`` operator commands: retry, purge, pause, resume, workers, drain.

Each returns an :class:`Output` (``--json`` prints its document). ``purge``
counts first and asks before deleting unless ``--yes`` (without a terminal it
refuses); ``--dry-run`` only counts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

from jobwire.client._cli_args import aware_time, json_payload
from jobwire.client._cli_output import Output, job_view
from jobwire.client._client import Client
from jobwire.client._errors import InvalidArgumentError
from jobwire.client._models import JobState
from jobwire.client._operations import KEEP, WorkerInfo

Run = Callable[[Client, argparse.Namespace, Console], Output]
AddCommand = Callable[[Any, str, Run, str], argparse.ArgumentParser]


class Aborted(ValueError):
    """The operator declined (or could not be asked) to confirm a purge."""


def add_commands(commands: Any, command: AddCommand) -> None:
    """Add the operator commands; ``command(group, name, run, help)`` makes each one."""
    retry = command(
        commands, "retry", _retry, "run a dead job again (by id), or every job a filter matches"
    )
    retry.add_argument("id", nargs="?", help="the job; omit to retry by filter")
    retry.add_argument("--payload", type=json_payload, help="new JSON payload (with an id)")
    retry.add_argument("--max-retries", type=int, help="new retries (with an id)")
    _filters(retry, states="dead, failed or cancelled (default: dead; with --id: all three)")
    retry.add_argument("--request-id", help="idempotency key of a retry by filter")

    purge = command(commands, "purge", _purge, "delete the jobs a filter matches")
    _filters(purge, states="any; processing ones need --include-processing")
    purge.add_argument("--all", action="store_true", help="every job of every queue")
    purge.add_argument(
        "--include-processing", action="store_true", help="also running jobs (stops them)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    for name, text in (("pause", "stop deliveries from"), ("resume", "resume deliveries from")):
        command(commands, name, _pause, f"{text} a queue on every gateway").add_argument("queue")

    workers = command(commands, "workers", _workers, "worker streams on every gateway")
    workers.add_argument("--queue", help="only workers of this queue")

    drain = command(commands, "drain", _drain, "ask a worker to finish its jobs and disconnect")
    drain.add_argument("worker_id")
    drain.add_argument("--session", help="only this stream of the worker")


def _filters(parser: argparse.ArgumentParser, *, states: str) -> None:
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        default=[],
        metavar="ID",
        help="only this job (a full id), repeatable, at most 1000; with other filters, both hold",
    )
    parser.add_argument("--queue", help="only jobs of this queue")
    parser.add_argument("--type", help="only jobs of this type")
    parser.add_argument(
        "--state",
        action="append",
        default=[],
        choices=[s.value for s in JobState],
        help=f"only jobs in this state, repeatable: {states}",
    )
    parser.add_argument("--error", help="only jobs whose last error contains this text")
    parser.add_argument(
        "--since", type=aware_time, help="only jobs created at or after this ISO time (with zone)"
    )
    parser.add_argument(
        "--until", type=aware_time, help="only jobs created before this ISO time (with zone)"
    )


def _retry(client: Client, args: argparse.Namespace, console: Console) -> Output:
    filtered = any(
        (
            args.ids,
            args.queue,
            args.type,
            args.state,
            args.error,
            args.since,
            args.until,
            args.request_id,
        )
    )
    if args.id is not None:
        if filtered:
            raise InvalidArgumentError(
                "give one job id, or filters (--id, --queue, --state...), not both"
            )
        payload = KEEP if args.payload is None else args.payload
        job = client.retry_job(args.id, payload=payload, max_retries=args.max_retries)
        return Output(job, job_view(job))
    if args.payload is not None or args.max_retries is not None:
        raise InvalidArgumentError("--payload and --max-retries need a job id")
    count = client.retry_jobs(
        **_selector(args), states=args.state or None, request_id=args.request_id
    )
    return Output({"retried": count}, f"retried {count} jobs")


def _purge(client: Client, args: argparse.Namespace, console: Console) -> Output:
    options = {
        **_selector(args),
        "states": args.state or None,
        "all": args.all,
        "include_processing": args.include_processing,
    }
    count = client.purge_jobs(**options, dry_run=True)
    if args.dry_run:
        return Output({"would_purge": count}, f"would purge {count} jobs")
    if count and not args.yes:
        if not sys.stdin.isatty():
            raise Aborted(f"would purge {count} jobs; pass --yes to confirm without a terminal")
        if not Confirm.ask(f"Purge {count} jobs?", default=False, console=console):
            raise Aborted("nothing purged")
    purged = client.purge_jobs(**options) if count else 0
    return Output({"purged": purged}, f"purged {purged} jobs")


def _pause(client: Client, args: argparse.Namespace, console: Console) -> Output:
    method = client.pause_queue if args.command == "pause" else client.resume_queue
    stats = method(args.queue)
    return Output(stats, f"{stats.queue}: {'paused' if stats.paused else 'flowing'}")


def _workers(client: Client, args: argparse.Namespace, console: Console) -> Output:
    workers = client.list_workers(args.queue)
    return Output(workers, _workers_table(workers))


def _drain(client: Client, args: argparse.Namespace, console: Console) -> Output:
    drained = client.drain_worker(args.worker_id, session_id=args.session)
    return Output(
        {"worker_id": args.worker_id, "drained": drained},
        f"asked {drained} stream(s) of {args.worker_id} to drain",
    )


def _selector(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "queue": args.queue,
        "type": args.type,
        "error_contains": args.error,
        "created_after": args.since,
        "created_before": args.until,
        "ids": args.ids or None,
    }


def _workers_table(workers: Iterable[WorkerInfo]) -> Table:
    table = Table(
        "worker", "host", "pid", "sdk", "queues", "credits", "in flight", "done", "failed", "since"
    )
    for w in workers:
        table.add_row(
            w.worker_id + (" (draining)" if w.draining else ""),
            w.host,
            str(w.pid or ""),
            w.sdk,
            ",".join(w.queues),
            str(w.credits),
            str(w.in_flight),
            str(w.completed),
            str(w.failed),
            w.connect_time.isoformat(timespec="seconds") if w.connect_time else "-",
        )
    return table
