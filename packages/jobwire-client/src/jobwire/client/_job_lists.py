"""Sequences of jobs that display as tables: what listing and watching calls return."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from jobwire.client import _text
from jobwire.client._models import Job
from jobwire.client._rich import Rich, frame

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class JobList(Sequence[Job], Rich):
    """An immutable sequence of jobs that displays as a table in notebooks.

    `client.jobs(...)` and `client.watch(...)` return one; `to_pandas()` turns it
    into a data frame.
    """

    jobs: tuple[Job, ...]

    @overload
    def __getitem__(self, index: int) -> Job: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Job, ...]: ...
    def __getitem__(self, index: int | slice) -> Job | tuple[Job, ...]:
        return self.jobs[index]

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def to_pandas(self) -> pd.DataFrame:
        """Returns a data frame with one row per job (needs the `pandas` extra).

        Raises:
            ImportError: pandas is not installed; `pip install './packages/jobwire-client[pandas]'`.
        """
        return frame(self)

    def _summary(self) -> str:
        states = _text.state_summary(Counter(job.state.value for job in self.jobs))
        return _text.count_text(len(self.jobs), "job") + (f": {states}" if states else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._summary()})"


@dataclass(frozen=True, slots=True, repr=False)
class JobPage(JobList):
    """One page of `list_jobs`: a sequence of jobs, newest first."""

    #: Pass to `list_jobs(page_token=...)` for the next page; None on the last page.
    next_page_token: str | None = None

    def __repr__(self) -> str:
        return f"JobPage({self._summary()}, next_page_token={self.next_page_token!r})"
