"""What a ``WatchJobs`` stream sends, and when.

Which changes a stream by selector sends: each state once, each end once
(:class:`FrameFilter`); how often any stream sends (:class:`FramePace`).
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict

from jobwire.gateway._models import JobRecord

MAX_ENDS_KEPT = 100_000
"""Ends a stream remembers, to drop late copies of them (the oldest are forgotten first)."""
FRAME_INTERVAL = 0.02
"""Least seconds between two frames of a stream: changes that come faster
gather into the next frame (a change after a quiet spell goes out at once)."""
SAME_CHANGE = 1e-5
"""Seconds within which two update times are one change: a copy read back from
storage may be rounded (SQS records keep microseconds, rounded to nearest),
while two real changes of a job are at least an event-loop turn apart."""


class FrameFilter:
    """Decides, per change, whether a stream sends it.

    A change is sent when it is newer than what the stream sent of the job:
    a copy published twice, or read back from storage after a newer one was
    sent, is dropped, so each terminal state goes out exactly once. A job
    stays followed until its end is sent; a newer change after that is a
    replay (``RetryJob``), which is followed again until its next end.
    """

    def __init__(self, max_ends: int = MAX_ENDS_KEPT) -> None:
        self._following: dict[str, float] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()
        self._max_ends = max_ends

    def take(self, job: JobRecord) -> bool:
        """Whether to send ``job`` as it is now; records that it was sent."""
        job_id, changed = job.id, job.update_time
        last = self._following.get(job_id)
        if last is None:
            last = self._ended.get(job_id)
        if last is not None and changed <= last + SAME_CHANGE:
            return False
        if job.state.is_terminal:
            self._following.pop(job_id, None)
            self._ended[job_id] = changed
            self._ended.move_to_end(job_id)
            if len(self._ended) > self._max_ends:
                self._ended.popitem(last=False)
        else:
            self._ended.pop(job_id, None)
            self._following[job_id] = changed
        return True


class FramePace:
    """Spaces a stream's frames :data:`FRAME_INTERVAL` apart.

    Jobs that run fast change thousands of times a second: a frame per
    change or two takes from the jobs the CPU the gateway and the watching
    client spend on it (a watched batch of 10,000 ran 39-58 % slower than an
    unwatched one, 22-31 % paced: ``bench:producers``), while a progress bar
    redraws ten times a second at most.
    """

    def __init__(self, interval: float = FRAME_INTERVAL) -> None:
        self._interval = interval
        self._sent = -math.inf

    async def wait(self) -> None:
        """Wait until the next frame may go (at once after a quiet spell)."""
        pause = self._sent + self._interval - asyncio.get_running_loop().time()
        if pause > 0:
            await asyncio.sleep(pause)

    def sent(self) -> None:
        """Note that a frame went out now."""
        self._sent = asyncio.get_running_loop().time()
