"""Which changes a ``WatchJobs`` stream by selector sends: each state once, each end once."""

from __future__ import annotations

from collections import OrderedDict

from jobwire.gateway._models import JobRecord

MAX_ENDS_KEPT = 100_000
"""Ends a stream remembers, to drop late copies of them (the oldest are forgotten first)."""
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
