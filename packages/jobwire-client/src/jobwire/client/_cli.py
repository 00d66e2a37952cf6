"""``jobwire``: operate a gateway from the shell (jobs, stats, schedules, queues, workers).

One function per subcommand, each taking the client and the parsed options
and returning an :class:`Output`; ``--json`` (on every command) prints its
document instead of its table. A job id may be shortened to a unique prefix
of at least 8 characters: the gateway resolves it (``GetJob``, ``CancelJob``,
``WatchJob``), so every client of the contract gets the same rule.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from jobwire.client import _cli_operations, _cli_queues
from jobwire.client.__about__ import __version__
from jobwire.client._cli_args import aware_time, json_payload
from jobwire.client._cli_output import (
    Output,
    job_view,
    jobs_table,
    schedules_table,
    stats_table,
)
from jobwire.client._client import Client
from jobwire.client._config import DEFAULT_ADDRESS, TLSConfig
from jobwire.client._errors import JobCancelledError, JobDeadError, JobwireError
from jobwire.client._models import Job, JobState
from jobwire.client._schedules import MisfirePolicy

Command = Callable[[Client, argparse.Namespace, Console], Output]

# Exit codes: 0 done, 1 the gateway refused or the job did not complete (argparse: 2, usage).
_REFUSED = 1


# Commands -----------------------------------------------------------------------


def _stats(client: Client, args: argparse.Namespace, console: Console) -> Output:
    rows = client.stats(args.queue)
    return Output(list(rows), stats_table(rows, console.width))


def _enqueue(client: Client, args: argparse.Namespace, console: Console) -> Output:
    job = client.enqueue(
        args.type,
        args.payload,
        queue=args.queue,
        delay=args.delay,
        at=args.at,
        max_retries=args.max_retries,
        timeout=args.timeout,
        deduplication_key=args.dedup_key,
        concurrency_key=args.key,
    )
    if not args.wait:
        return Output(job, job_view(job))
    if not args.json:
        console.print(f"enqueued {job.id}; waiting for it to finish", highlight=False)
    # A job that did not complete is shown below, and the exit code says so.
    with contextlib.suppress(JobDeadError, JobCancelledError):
        client.wait(job)
    done = client.get_job(job.id)
    return Output(done, job_view(done))


def _jobs(client: Client, args: argparse.Namespace, console: Console) -> Output:
    states = [JobState(s) for s in args.state] or None
    page = client.list_jobs(queue=args.queue, type=args.type, state=states, page_size=args.limit)
    return Output(list(page), jobs_table(page, console.width))


def _job(client: Client, args: argparse.Namespace, console: Console) -> Output:
    job = client.get_job(args.id)
    return Output(job, job_view(job))


def _cancel(client: Client, args: argparse.Namespace, console: Console) -> Output:
    job = client.cancel_job(args.id, reason=args.reason)
    return Output(job, job_view(job))


def _schedules_list(client: Client, args: argparse.Namespace, console: Console) -> Output:
    schedules = client.list_schedules()
    return Output(list(schedules), schedules_table(schedules))


def _schedules_register(client: Client, args: argparse.Namespace, console: Console) -> Output:
    schedule = client.register_recurring(
        args.name,
        args.type,
        args.payload,
        schedule=args.schedule,
        time_zone=args.time_zone,
        queue=args.queue,
        misfire_policy=args.misfire,
        description=args.description,
    )
    return Output(schedule, schedules_table([schedule]))


def _schedule_action(method: str) -> Command:
    """``show``, ``pause``, ``resume``: one schedule by name."""

    def run(client: Client, args: argparse.Namespace, console: Console) -> Output:
        schedule = getattr(client, method)(args.name)
        return Output(schedule, schedules_table([schedule]))

    return run


def _schedules_trigger(client: Client, args: argparse.Namespace, console: Console) -> Output:
    job = client.trigger_schedule(args.name)
    return Output(job, job_view(job))


def _schedules_delete(client: Client, args: argparse.Namespace, console: Console) -> Output:
    client.delete_schedule(args.name, missing_ok=args.missing_ok)
    return Output({"deleted": args.name}, f"deleted {args.name}")


# Parser -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobwire", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    # Every command takes --json: one JSON document on stdout, for scripts and jq.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group: Any, name: str, run: Command, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, parents=[common])
        sub.set_defaults(run=run)
        return sub

    stats = command(commands, "stats", _stats, "job counts per queue")
    stats.add_argument("queue", nargs="?")
    enqueue = command(commands, "enqueue", _enqueue, "enqueue one job")
    enqueue.add_argument("type")
    enqueue.add_argument("payload", nargs="?", type=json_payload, help="JSON payload")
    enqueue.add_argument("--queue", default="default")
    enqueue.add_argument("--delay", type=float, metavar="SECONDS", help="run no sooner than this")
    enqueue.add_argument("--at", type=aware_time, metavar="TIME", help="ISO 8601 with offset")
    enqueue.add_argument(
        "--max-retries", type=int, metavar="N", help="retries after a failure (default: 3)"
    )
    enqueue.add_argument("--timeout", type=float, metavar="SECONDS", help="longest one attempt")
    enqueue.add_argument("--dedup-key", metavar="KEY", help="deduplication key")
    enqueue.add_argument("--key", metavar="KEY", help="concurrency key (flow control)")
    enqueue.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job finishes, print it; exit 1 unless it completed",
    )
    jobs = command(commands, "jobs", _jobs, "list jobs, newest first")
    jobs.add_argument("--queue")
    jobs.add_argument("--type")
    jobs.add_argument("--state", action="append", default=[], choices=[s.value for s in JobState])
    jobs.add_argument("--limit", type=int, default=50)
    job = command(commands, "job", _job, "show every field of one job")
    job.add_argument("id", help="job id, or a unique prefix of at least 8 characters")
    cancel = command(commands, "cancel", _cancel, "cancel one job")
    cancel.add_argument("id", help="job id, or a unique prefix of at least 8 characters")
    cancel.add_argument("--reason", default="cancelled from the jobwire CLI")
    _cli_operations.add_commands(commands, command)
    _cli_queues.add_commands(commands, command)

    schedules = commands.add_parser("schedules", help="recurring jobs")
    actions = schedules.add_subparsers(dest="action", required=True)
    command(actions, "list", _schedules_list, "every schedule")
    register = command(actions, "register", _schedules_register, "create or update a schedule")
    register.add_argument("name")
    register.add_argument("type")
    register.add_argument(
        "schedule", help='cron ("0 9 * * *", "@daily") or interval ("every 30 minutes")'
    )
    register.add_argument("--payload", type=json_payload, help="JSON payload")
    register.add_argument("--time-zone", default="UTC")
    register.add_argument("--queue", default="default")
    register.add_argument("--misfire", default="skip", choices=[p.value for p in MisfirePolicy])
    register.add_argument("--description", default="")
    for action, method in (
        ("show", "get_schedule"),
        ("pause", "pause_schedule"),
        ("resume", "resume_schedule"),
    ):
        command(actions, action, _schedule_action(method), f"{action} a schedule").add_argument(
            "name"
        )
    command(actions, "trigger", _schedules_trigger, "enqueue a schedule's job now").add_argument(
        "name"
    )
    delete = command(actions, "delete", _schedules_delete, "delete a schedule")
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
    errors = Console(stderr=True)
    try:
        with Client(args.gateway, token=args.token, tls=_tls(args)) as client:
            output = args.run(client, args, console)
    except (JobwireError, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        return _REFUSED
    if args.json:
        print(output.json())
    else:
        console.print(output.view)
    waited = getattr(args, "wait", False)
    if waited and isinstance(output.data, Job) and output.data.state is not JobState.COMPLETED:
        return _REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
