"""``jobwire``: operate a gateway from the shell (jobs, stats, schedules)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from jobwire.client._client import Client
from jobwire.client._config import DEFAULT_ADDRESS, TLSConfig
from jobwire.client._errors import JobwireError
from jobwire.client._models import Job, JobState, QueueStats
from jobwire.client._schedules import MisfirePolicy, Schedule


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _schedules_table(schedules: Iterable[Schedule]) -> Table:
    table = Table(
        "name", "type", "queue", "timetable", "time zone", "next run", "last run", "state"
    )
    for s in schedules:
        state = "paused" if s.paused else ("error: " + s.last_error if s.last_error else "active")
        table.add_row(
            s.name,
            s.type,
            s.queue,
            s.every,
            s.time_zone,
            _when(s.next_run_time),
            _when(s.last_run_time),
            state,
        )
    return table


def _jobs_table(jobs: Iterable[Job]) -> Table:
    table = Table("id", "type", "queue", "state", "attempt", "created", "last error")
    for job in jobs:
        error = job.last_error.message if job.last_error else ""
        table.add_row(
            job.id,
            job.type,
            job.queue,
            job.state.value,
            str(job.attempt),
            _when(job.create_time),
            error,
        )
    return table


def _stats_table(rows: Iterable[QueueStats]) -> Table:
    columns = ("pending", "scheduled", "processing", "completed", "failed", "dead", "cancelled")
    table = Table("queue", *columns, "oldest pending", "workers")
    for row in rows:
        counts = [str(getattr(row, column)) for column in columns]
        table.add_row(row.queue, *counts, str(row.oldest_pending_age), str(row.workers))
    return table


def _payload(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run(client: Client, args: argparse.Namespace) -> Any:
    command = args.command
    if command == "stats":
        return _stats_table(client.stats(args.queue))
    if command == "enqueue":
        return client.enqueue(args.type, _payload(args.payload), queue=args.queue, delay=args.delay)
    if command == "jobs":
        states = [JobState(s) for s in args.state] or None
        page = client.list_jobs(
            queue=args.queue, type=args.type, state=states, page_size=args.limit
        )
        return _jobs_table(page)
    if command == "job":
        return client.get_job(args.id)
    if command == "cancel":
        return client.cancel_job(args.id, reason=args.reason)
    action = args.action
    if action == "list":
        return _schedules_table(client.list_schedules())
    if action == "register":
        return client.register_recurring(
            args.name,
            args.type,
            _payload(args.payload),
            schedule=args.schedule,
            time_zone=args.time_zone,
            queue=args.queue,
            misfire_policy=args.misfire,
            description=args.description,
        )
    if action == "delete":
        client.delete_schedule(args.name, missing_ok=args.missing_ok)
        return f"deleted {args.name}"
    methods = {
        "show": client.get_schedule,
        "pause": client.pause_schedule,
        "resume": client.resume_schedule,
        "trigger": client.trigger_schedule,
    }
    return methods[action](args.name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobwire", description=__doc__)
    parser.add_argument(
        "--gateway",
        help=f"gateway address, host:port (default: $JOBWIRE_GATEWAY or {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--token", help="bearer token (default: $JOBWIRE_TOKEN)")
    parser.add_argument(
        "--tls", action="store_true", help="connect over TLS (implied by the --tls-* options)"
    )
    parser.add_argument("--tls-ca", metavar="PEM", help="CA that signed the gateway's certificate")
    parser.add_argument("--tls-cert", metavar="PEM", help="client certificate, for mutual TLS")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    commands = parser.add_subparsers(dest="command", required=True)

    stats = commands.add_parser("stats", help="job counts per queue")
    stats.add_argument("queue", nargs="?")
    enqueue = commands.add_parser("enqueue", help="enqueue one job")
    enqueue.add_argument("type")
    enqueue.add_argument("payload", nargs="?", help="JSON payload")
    enqueue.add_argument("--queue", default="default")
    enqueue.add_argument("--delay", type=float, help="seconds")
    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--queue")
    jobs.add_argument("--type")
    jobs.add_argument("--state", action="append", default=[], choices=[s.value for s in JobState])
    jobs.add_argument("--limit", type=int, default=50)
    job = commands.add_parser("job", help="show one job")
    job.add_argument("id")
    cancel = commands.add_parser("cancel", help="cancel one job")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="cancelled from the jobwire CLI")

    schedules = commands.add_parser("schedules", help="recurring jobs")
    actions = schedules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every schedule")
    register = actions.add_parser("register", help="create or update a schedule")
    register.add_argument("name")
    register.add_argument("type")
    register.add_argument("schedule", help='cron ("0 9 * * *") or interval ("every 30 minutes")')
    register.add_argument("--payload", help="JSON payload")
    register.add_argument("--time-zone", default="UTC")
    register.add_argument("--queue", default="default")
    register.add_argument("--misfire", default="skip", choices=[p.value for p in MisfirePolicy])
    register.add_argument("--description", default="")
    for action in ("show", "pause", "resume", "trigger"):
        actions.add_parser(action, help=f"{action} a schedule").add_argument("name")
    delete = actions.add_parser("delete", help="delete a schedule")
    delete.add_argument("name")
    delete.add_argument("--missing-ok", action="store_true")
    return parser


def _tls(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS settings the options ask for, or None for plaintext."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    return TLSConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobwire`` command."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        with Client(args.gateway, token=args.token, tls=_tls(args)) as client:
            output = _run(client, args)
    except (JobwireError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 1
    console.print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
