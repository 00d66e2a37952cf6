from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobwire.client import QueueStats
from jobwire.dashboard._history import History

T0 = datetime(2026, 12, 6, 10, 0, 5, tzinfo=UTC)


def test_rates_come_from_the_growth_between_samples() -> None:
    history = History()
    history.record(T0, [QueueStats(queue="a", pending=5, completed=10, dead=1)])
    history.record(
        T0 + timedelta(seconds=20),
        [QueueStats(queue="a", pending=2, completed=16, failed=1, dead=2)],
    )
    (minute,) = history.window(T0 + timedelta(seconds=30))[-1:]
    assert minute.start == T0.replace(second=0)
    assert minute.enqueued == 5  # 16 jobs before, 21 after
    assert minute.completed == 6
    assert minute.failed == 2
    assert minute.depth == 3


def test_a_new_queue_counts_all_its_jobs_as_enqueued() -> None:
    history = History()
    history.record(T0, [])
    history.record(T0 + timedelta(seconds=1), [QueueStats(queue="new", pending=4)])
    assert history.window(T0)[-1].enqueued == 4


def test_forgotten_jobs_never_make_a_rate_negative() -> None:
    history = History()
    history.record(T0, [QueueStats(queue="a", completed=100)])
    history.record(T0 + timedelta(seconds=1), [QueueStats(queue="a", completed=40)])
    minute = history.window(T0)[-1]
    assert (minute.enqueued, minute.completed) == (0, 0)


def test_the_buffer_keeps_the_last_hour_only() -> None:
    history = History(minutes=60)
    for minute in range(150):
        history.record(T0 + timedelta(minutes=minute), [QueueStats(queue="a", pending=minute)])
    assert len(history) == 60
    window = history.window(T0 + timedelta(minutes=149))
    assert len(window) == 60
    assert [m.depth for m in window] == list(range(90, 150))


def test_minutes_without_samples_are_zeros() -> None:
    history = History()
    history.record(T0, [QueueStats(queue="a", pending=1)])
    window = history.window(T0 + timedelta(minutes=3))
    assert [m.depth for m in window[-4:]] == [1, 0, 0, 0]
