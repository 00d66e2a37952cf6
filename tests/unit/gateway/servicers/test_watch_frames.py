"""FrameFilter: which changes a WatchJobs stream by selector sends; FramePace: when."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway.servicers._watch_frames import SAME_CHANGE, FrameFilter, FramePace


def job(state: JobState, at: float, job_id: str = "j1") -> JobRecord:
    new = NewJob("default", "t", b"", "application/json", {}, 3, None, "", None, "", id=job_id)
    return replace(JobRecord.create(new, 0.0), state=state, update_time=at)


def test_each_state_once_and_late_copies_dropped() -> None:
    frames = FrameFilter()
    assert frames.take(job(JobState.PENDING, 1.0))
    assert not frames.take(job(JobState.PENDING, 1.0)), "the same change twice"
    assert frames.take(job(JobState.PROCESSING, 2.0))
    assert not frames.take(job(JobState.PENDING, 1.0)), "an older copy read back late"
    assert frames.take(job(JobState.COMPLETED, 3.0))
    assert not frames.take(job(JobState.COMPLETED, 3.0 + SAME_CHANGE / 2)), "a rounded copy"
    assert not frames.take(job(JobState.PROCESSING, 2.0)), "a stale state after the end"


def test_a_replay_after_the_end_is_followed_to_its_next_end() -> None:
    frames = FrameFilter()
    assert frames.take(job(JobState.DEAD, 1.0))
    assert frames.take(job(JobState.PENDING, 5.0))
    assert frames.take(job(JobState.COMPLETED, 6.0))
    assert not frames.take(job(JobState.COMPLETED, 6.0))


def test_the_oldest_ends_are_forgotten_past_the_bound() -> None:
    frames = FrameFilter(max_ends=2)
    for n in range(3):
        assert frames.take(job(JobState.CANCELLED, 1.0, f"j{n}"))
    assert frames.take(job(JobState.CANCELLED, 1.0, "j0")), "forgotten: sent again"
    assert not frames.take(job(JobState.CANCELLED, 1.0, "j2"))


async def test_frames_go_at_once_after_a_quiet_spell_else_an_interval_apart() -> None:
    loop = asyncio.get_running_loop()
    pace = FramePace(interval=0.05)
    await asyncio.wait_for(pace.wait(), timeout=5)  # nothing sent yet: at once
    pace.sent()
    sent = loop.time()
    await pace.wait()
    # asyncio may wake a timer up to its clock resolution early.
    assert loop.time() - sent >= 0.05 - time.get_clock_info("monotonic").resolution

    slow = FramePace(interval=3600)
    slow.sent()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow.wait(), timeout=0.05)
