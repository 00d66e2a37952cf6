"""Dead jobs grouped by type and error message, each group replayable at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from jobwire.client import Job, JobState
from jobwire.dashboard._render import dashboard

#: Jobs of a group linked from its row.
SAMPLES = 5


@dataclass
class DeadGroup:
    """Dead jobs of one type that died with one error message."""

    type: str
    message: str
    count: int = 0
    queues: set[str] = field(default_factory=set)
    latest: datetime | None = None
    samples: list[Job] = field(default_factory=list)

    def add(self, job: Job) -> None:
        """Counts `job` in the group."""
        self.count += 1
        self.queues.add(job.queue)
        moment = job.end_time or job.update_time
        if moment is not None and (self.latest is None or moment > self.latest):
            self.latest = moment
        if len(self.samples) < SAMPLES:
            self.samples.append(job)


def group(jobs: list[Job]) -> list[DeadGroup]:
    """Groups dead jobs by (type, error message), largest group first."""
    groups: dict[tuple[str, str], DeadGroup] = {}
    for job in jobs:
        message = job.last_error.message if job.last_error else ""
        groups.setdefault((job.type, message), DeadGroup(job.type, message)).add(job)
    return sorted(groups.values(), key=lambda g: (-g.count, g.type, g.message))


async def dead_page(request: Request) -> Response:
    """GET /dead: the groups of dead jobs."""
    board = dashboard(request)
    jobs = await board.client.jobs(state=JobState.DEAD, limit=board.settings.scan_limit)
    return board.page(
        request,
        "dead.html",
        groups=group(list(jobs)),
        total=len(jobs),
        truncated=len(jobs) >= board.settings.scan_limit,
    )
