"""Claims of a queue under flow control: what its limits admit, its keys in turn.

One transaction per queue (:func:`claim_lanes`), on a :class:`LaneStore`
(SQLAlchemy on either database, :mod:`._lane_store`; asyncpg on PostgreSQL,
:mod:`._direct_lanes`, fewer round trips), after the queue's ``queue_flow``
row is locked (:mod:`._flow`):

1. **Budget**: the queue's room is its ``max_concurrency`` less the jobs
   processing, and the whole tokens of its rate's bucket.
2. **Lanes**: the keys with a job due, in key order after the key served
   last and around again (a loose index scan of ``<prefix>jobs_lanes``: one
   index probe per key, never a scan of a key's backlog; jobs without a key
   are the lane ``""``). A claim reads its limit and :data:`LANE_SLACK` keys
   first, then, when those gave too little (keys at their limit), the
   others up to :data:`MAX_LANES`.
3. **Turns**: each lane whose key has a free slot gets ``weight`` jobs per
   round (1 by default) until the room is used; the jobs of all lanes are
   then claimed in one statement (one small ``LIMIT`` per key, ``FOR UPDATE
   SKIP LOCKED``), in priority and age order within a key. A lane that had
   fewer jobs due than its share leaves the rest to the others (at most
   :data:`PASSES` statements).
4. The bucket's tokens left and the key served last are written back.

With ``fifo_across_keys`` the oldest ready jobs go first, skipping keys at
their limit (among the oldest ``4 * room`` ready jobs).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jobwire.gateway._limits import QueueLimits
from jobwire.gateway.providers._flow import budget, token_wait, tokens_at, whole
from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._tables import WAITING_SQL

MAX_LANES = 1000
"""Most keys one claim looks at (a queue with more takes them over several claims)."""
LANE_SLACK = 8
"""Keys a claim reads beyond its limit first (for keys at their limit or with nothing due)."""
PASSES = 3
"""Most claim statements of one claim's turns."""

Visit = tuple[str, int]
"""A lane's turn in a claim: its key and how many jobs it gets."""


def lanes_query(jobs: str, queue: str, turn: str, most: str, now: str) -> str:
    """The first ``most`` keys with jobs due at ``now``, after ``turn``, then up to ``turn``.

    Two loose index scans (an ``ORDER BY … LIMIT 1`` per key, as PostgreSQL's
    wiki has it; SQLite runs it too); ``queue``, ``turn``, ``most`` and ``now``
    are the placeholders of the driver's parameters. Keys whose jobs are all
    delayed are not lanes yet: they would take the turns of keys with work.
    """

    def scan(name: str, first: str, until: str, bound: str) -> str:
        def next_key(after: str) -> str:
            return (
                f"(SELECT concurrency_key FROM {jobs} WHERE queue = {queue} AND {WAITING_SQL} "
                f"AND concurrency_key {after} {until} AND run_at <= {now} "
                "ORDER BY concurrency_key LIMIT 1)"
            )

        return (
            f"{name}(k, n) AS (SELECT {next_key(first)}, 1 WHERE {bound} > 0 UNION ALL SELECT "
            f"{next_key(f'> {name}.k')}, {name}.n + 1 FROM {name} "
            f"WHERE {name}.k IS NOT NULL AND {name}.n < {bound})"
        )

    later = scan("later", f"> {turn}", "", most)
    # Around again only for what the keys after the turn left of ``most``.
    earlier = scan(
        "earlier",
        ">= ''",
        f"AND concurrency_key <= {turn}",
        f"({most} - (SELECT count(k) FROM later))",
    )
    return (
        f"WITH RECURSIVE {later}, {earlier} "
        "SELECT k FROM (SELECT k, 0 AS part, n FROM later UNION ALL "
        "SELECT k, 1 AS part, n FROM earlier) AS lanes WHERE k IS NOT NULL ORDER BY part, n"
    )


@dataclass(frozen=True, slots=True)
class Locked:
    """A queue's ``queue_flow`` row, locked, with what a claim reads under the lock."""

    limits: QueueLimits
    tokens: float
    refilled: float
    turn: str
    served: int
    paused: bool
    running: dict[str, int]
    """The queue's jobs processing now, per key."""


class LaneStore(Protocol):
    """The statements of a claim, in one transaction on one connection."""

    async def lock(self, queue: str, lanes: int, now: float) -> Locked | None:
        """Lock the queue's row; None when it has none (``lanes``, ``now``: :meth:`lane_keys`)."""
        ...

    async def lane_keys(self, queue: str, turn: str, most: int, now: float) -> list[str]:
        """:func:`lanes_query`: the first ``most`` keys with jobs due in turn order."""
        ...

    async def pick(
        self, consumer: Consumer, queue: str, wants: dict[str, int], now: float
    ) -> list[Any]:
        """Claim up to ``wants[key]`` ready jobs of each key; their rows."""
        ...

    async def oldest(
        self, consumer: Consumer, queue: str, busy: list[str], limit: int, now: float
    ) -> list[tuple[int, str]]:
        """The oldest ready jobs (``seq``, key) of keys not ``busy``, locked."""
        ...

    async def take(self, consumer: Consumer, seqs: list[int], now: float) -> list[Any]:
        """Claim these jobs; their rows."""
        ...

    async def store(self, queue: str, tokens: float, turn: str, served: int, now: float) -> None:
        """Write the bucket's tokens and the rotation's place back."""
        ...


async def claim_lanes(
    store: LaneStore, consumer: Consumer, queue: str, limit: int, now: float
) -> tuple[list[Any], float | None]:
    """Claim up to ``limit`` jobs of ``queue`` as its limits and turns allow.

    Returns the rows in delivery order, and when nothing could be taken
    because of the rate, the seconds until its next token (else None).
    """
    row = await store.lock(queue, lanes_to_read(limit), now)
    if row is None or row.paused:
        return [], None
    # Another gateway's claim may have held the row meanwhile: the bucket counts from now.
    now = max(now, time.time())
    limits, running = row.limits, row.running
    rate = limits.rate
    tokens = None if rate is None else tokens_at(rate, row.tokens, row.refilled, now)
    room = min(
        limit, budget(limits, sum(running.values()), None if tokens is None else whole(tokens))
    )
    if room <= 0:
        if rate is not None and tokens is not None and whole(tokens) == 0:
            return [], token_wait(rate, tokens)
        return [], None
    turn, served = row.turn, row.served
    if limits.fifo_across_keys:
        rows = await _oldest(store, consumer, queue, limits, running, int(room), now)
    else:
        rotation = Rotation(turn, served, limits, running, int(room))
        rows = await rotation.claim(store, consumer, queue, now)
        turn, served = rotation.turn, rotation.served
    if rows or tokens is not None:
        left = 0.0 if tokens is None else tokens - len(rows)
        await store.store(queue, left, turn, served, now)
    return rows, None


def lanes_to_read(limit: int) -> int:
    """How many keys a claim of up to ``limit`` jobs reads first (each free key gets one)."""
    return min(MAX_LANES, limit + LANE_SLACK)


def allocate(
    keys: Sequence[str],
    left: dict[str, int],
    weight: Callable[[str], int],
    room: int,
    first: dict[str, int] | None = None,
) -> list[Visit]:
    """Round-robin turns over ``keys``: ``weight`` jobs a round, within ``left`` and ``room``.

    ``first`` gives a key what is left of a turn an earlier claim began.
    """
    given: Counter[str] = Counter()
    visits: list[Visit] = []
    active = [key for key in keys if left[key] > 0]
    total = 0
    rest = dict(first or {})
    while active and total < room:
        still = []
        for key in active:
            turn = rest.pop(key, None) or weight(key)
            n = min(turn, left[key] - given[key], room - total)
            if n <= 0:
                break
            given[key] += n
            total += n
            visits.append((key, n))
            if given[key] < left[key]:
                still.append(key)
        active = still
    return visits


class Rotation:
    """One claim's turns over a queue's lanes, going on from where the last claim stopped.

    Args:
        turn: the key served last.
        served: the jobs it got in its turn so far (a turn is ``weight`` jobs).
        limits: the queue's limits.
        running: the queue's jobs processing, per key.
        room: the most jobs to claim.
    """

    def __init__(
        self, turn: str, served: int, limits: QueueLimits, running: dict[str, int], room: int
    ) -> None:
        self.turn = turn
        self.served = served
        self._limits = limits
        self._running = running
        self._room = room

    async def claim(
        self, store: LaneStore, consumer: Consumer, queue: str, now: float
    ) -> list[Any]:
        """Claim the jobs of the lanes' turns; ``turn`` and ``served`` are then this claim's."""
        limits, room, after = self._limits, self._room, self.turn
        most = lanes_to_read(room)
        keys = await store.lane_keys(queue, after, most, now)
        left = {key: self._free(key) for key in keys}
        first: dict[str, int] = {}
        if self.turn in keys and self.served < limits.weight(self.turn):
            # The key served last has not had its whole turn: it goes on first.
            keys.remove(self.turn)
            keys.insert(0, self.turn)
            first[self.turn] = limits.weight(self.turn) - self.served
        rows: list[Any] = []
        visits: list[Visit] = []
        await self._passes(store, consumer, queue, now, keys, left, first, rows, visits)
        if len(rows) < room and len(keys) >= most and most < MAX_LANES:
            # The keys read first gave too little (at their limit, or nothing
            # due): the keys after them, in the same turn order.
            more = [k for k in await store.lane_keys(queue, after, MAX_LANES, now) if k not in left]
            left.update((key, self._free(key)) for key in more)
            await self._passes(store, consumer, queue, now, more, left, {}, rows, visits)
        return in_turns(rows, visits)

    def _free(self, key: str) -> int:
        per_key = self._limits.max_concurrency_per_key
        return per_key - self._running.get(key, 0) if key and per_key else self._room

    async def _passes(
        self,
        store: LaneStore,
        consumer: Consumer,
        queue: str,
        now: float,
        keys: list[str],
        left: dict[str, int],
        first: dict[str, int],
        rows: list[Any],
        visits: list[Visit],
    ) -> None:
        """Claim over ``keys`` in turns (at most ``PASSES`` statements), into ``rows``."""
        limits, room = self._limits, self._room
        for _ in range(PASSES):
            planned = allocate(keys, left, limits.weight, room - len(rows), first)
            if not planned:
                break
            wants: dict[str, int] = Counter()
            for key, n in planned:
                wants[key] += n
            got = await store.pick(consumer, queue, wants, now)
            counted = Counter(r["concurrency_key"] for r in got)
            for key, n in wants.items():
                left[key] = 0 if counted[key] < n else left[key] - n  # short: none more due
            rows.extend(got)
            took = [(key, n) for key, n in planned if counted[key]]
            if took:
                key, n = took[-1]
                going_on = not visits and len(took) == 1 and key in first
                self.turn, self.served = key, n + (self.served if going_on else 0)
            visits.extend(took)
            first = {}
            if all(counted[key] >= n for key, n in wants.items()) or len(rows) >= room:
                break


def in_turns(rows: list[Any], visits: list[Visit]) -> list[Any]:
    """The claimed rows in delivery order: lane by lane as the turns went."""
    lanes: dict[str, deque[Any]] = defaultdict(deque)
    for row in sorted(rows, key=claim_order):
        lanes[row["concurrency_key"]].append(row)
    ordered = []
    for key, n in visits:
        lane = lanes[key]
        for _ in range(min(n, len(lane))):
            ordered.append(lane.popleft())
    for lane in lanes.values():
        ordered.extend(lane)
    return ordered


def claim_order(row: Any) -> tuple[int, float, int]:
    """Priority first, then the oldest: the order claims pick jobs in."""
    return (-row["priority"], row["run_at"], row["seq"])


async def _oldest(
    store: LaneStore,
    consumer: Consumer,
    queue: str,
    limits: QueueLimits,
    running: dict[str, int],
    room: int,
    now: float,
) -> list[Any]:
    """Fair dispatch off: the oldest ready jobs of keys with a free slot."""
    per_key = limits.max_concurrency_per_key
    busy = [key for key, n in running.items() if key and per_key and n >= per_key]
    counts = Counter(running)
    chosen: list[int] = []
    for seq, key in await store.oldest(consumer, queue, busy, min(4 * room, MAX_LANES), now):
        if len(chosen) >= room:
            break
        if key and per_key and counts[key] >= per_key:
            continue
        counts[key] += 1
        chosen.append(seq)
    if not chosen:
        return []
    return sorted(await store.take(consumer, chosen, now), key=claim_order)
