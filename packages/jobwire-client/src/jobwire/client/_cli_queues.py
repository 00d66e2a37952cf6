"""``jobwire queue``: a queue's flow control (``config``) and every configured queue (``configs``).

``jobwire queue config reports`` shows one queue's limits; with options it
changes those named, e.g. ``jobwire queue config reports --max-per-key 2
--rate 100/minute``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from jobwire.client._cli_output import Output
from jobwire.client._client import Client
from jobwire.client._queue_config import QueueConfig

AddCommand = Callable[[Any, str, Any, str], argparse.ArgumentParser]
_POLICIES = ("queue", "cancel_in_progress", "cancel_newest")


def add_commands(commands: Any, command: AddCommand) -> None:
    """Add ``queue config`` and ``queue configs``; ``command(...)`` makes each."""
    queue = commands.add_parser("queue", help="a queue's flow control: limits, rate, fairness")
    actions = queue.add_subparsers(dest="action", required=True)
    config = command(
        actions, "config", _config, "show a queue's flow control, or change what the options name"
    )
    config.add_argument("queue")
    config.add_argument(
        "--max-per-key", type=int, metavar="N", help="jobs of one concurrency key at once (0: any)"
    )
    config.add_argument(
        "--max-concurrency", type=int, metavar="N", help="jobs of the queue at once (0: any)"
    )
    config.add_argument(
        "--rate", metavar="RATE", help='deliveries per period: "100/minute", "5/second"; "none"'
    )
    config.add_argument("--burst", type=int, metavar="N", help="admitted at once (with --rate)")
    config.add_argument(
        "--on-busy-key", choices=_POLICIES, help="what an enqueue does when its key is full"
    )
    config.add_argument(
        "--weight",
        action="append",
        type=_weight,
        metavar="KEY=N",
        help="deliveries per fair-dispatch round of a key (repeat; replaces the weights)",
    )
    config.add_argument(
        "--fifo-across-keys",
        action=argparse.BooleanOptionalAction,
        help="fair dispatch off: the oldest ready job across keys first",
    )
    command(actions, "configs", _configs, "every queue with flow control")


def _weight(text: str) -> tuple[str, int]:
    key, sep, number = text.rpartition("=")
    if not sep or not key or not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected KEY=N, e.g. big-tenant=3, got {text!r}")
    return key, int(number)


def _config(client: Client, args: argparse.Namespace, console: Console) -> Output:
    changes: dict[str, Any] = {}
    if args.max_per_key is not None:
        changes["max_concurrency_per_key"] = args.max_per_key
    if args.max_concurrency is not None:
        changes["max_concurrency"] = args.max_concurrency
    if args.rate is not None:
        changes["rate"] = None if args.rate.lower() == "none" else args.rate
    if args.burst is not None:
        changes["burst"] = args.burst
        if "rate" not in changes:  # a new burst for the rate the queue has
            changes["rate"] = client.get_queue_config(args.queue).rate
    if args.on_busy_key is not None:
        changes["on_busy_key"] = args.on_busy_key
    if args.weight:
        changes["key_weights"] = dict(args.weight)
    if args.fifo_across_keys is not None:
        changes["fifo_across_keys"] = args.fifo_across_keys
    if changes:
        config = client.update_queue_config(args.queue, **changes)
    else:
        config = client.get_queue_config(args.queue)
    return Output(config, _table([config]))


def _configs(client: Client, args: argparse.Namespace, console: Console) -> Output:
    configs = client.list_queue_configs()
    return Output(configs, _table(configs) if configs else "no queue has flow control")


def _table(configs: Iterable[QueueConfig]) -> Table:
    table = Table(
        "queue", "max per key", "max concurrency", "rate", "on busy key", "weights", "dispatch"
    )
    for c in configs:
        table.add_row(
            c.queue,
            str(c.max_concurrency_per_key or "-"),
            str(c.max_concurrency or "-"),
            f"{c.rate} (burst {c.burst})" if c.rate else "-",
            c.on_busy_key,
            ", ".join(f"{k}={w}" for k, w in c.key_weights.items()) or "-",
            "fifo across keys" if c.fifo_across_keys else "fair",
        )
    return table
