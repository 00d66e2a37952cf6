"""Rich display: `_repr_html_` tables (escaped), readable reprs, and `to_pandas()`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from jobwire.client import (
    Job,
    JobFailure,
    JobList,
    JobPage,
    JobProgress,
    JobState,
    QueueStats,
    QueueStatsList,
    Schedule,
    ScheduleList,
)
from jobwire.client._display import MAX_ROWS, STATE_COLOURS
from jobwire.client._text import duration_text

EVIL = '<script>alert("x")</script>&'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def job(id: str = "j1", state: JobState = JobState.COMPLETED, **fields: object) -> Job:
    return Job(id=id, type="email:send", state=state, attempt=1, create_time=CREATED, **fields)  # type: ignore[arg-type]


def evil_job() -> Job:
    return Job(
        id=EVIL,
        type=EVIL,
        queue=EVIL,
        state=JobState.DEAD,
        content_type="application/json",
        raw_payload=b'{"to": "<b>ada</b>"}',
        raw_result=b'"<img src=x onerror=alert(1)>"',
        attributes={EVIL: EVIL},
        worker_id=EVIL,
        schedule=EVIL,
        deduplication_key=EVIL,
        progress=JobProgress(current=1, total=2, message=EVIL),
        last_error=JobFailure(message=EVIL, type=EVIL),
    )


def assert_escaped(markup: str) -> None:
    assert "<script" not in markup
    assert "<b>ada" not in markup
    assert "<img" not in markup
    assert ESCAPED in markup


class TestEscaping:
    def test_job(self) -> None:
        markup = evil_job()._repr_html_()
        assert_escaped(markup)
        assert "&lt;b&gt;ada&lt;/b&gt;" in markup  # the payload, shown escaped
        assert "&lt;img src=x onerror=alert(1)&gt;" in markup  # the result

    def test_job_list(self) -> None:
        assert_escaped(JobList((evil_job(), job()))._repr_html_())

    def test_job_page_token(self) -> None:
        assert_escaped(JobPage((evil_job(),), next_page_token=EVIL)._repr_html_())

    def test_stats(self) -> None:
        assert_escaped(QueueStatsList([QueueStats(queue=EVIL, dead=1)])._repr_html_())
        assert_escaped(QueueStats(queue=EVIL)._repr_html_())

    def test_schedules(self) -> None:
        schedule = Schedule(name=EVIL, type=EVIL, queue=EVIL, cron=EVIL, last_error=EVIL)
        assert_escaped(ScheduleList([schedule])._repr_html_())
        assert_escaped(schedule._repr_html_())


class TestJobHtml:
    def test_state_badge_in_its_colour(self) -> None:
        for state in JobState:
            markup = job(state=state)._repr_html_()
            assert f'background:{STATE_COLOURS[state.value]}">{state.value}</span>' in markup

    def test_fields(self) -> None:
        markup = job(
            max_retries=3,
            progress=JobProgress(current=1, total=4, message="rendering"),
            content_type="application/json",
            raw_payload=b'{"to": "ada"}',
        )._repr_html_()
        assert "Job j1 (times in UTC)" in markup
        assert "1 of 4" in markup  # attempt 1 of max_retries + 1
        assert "2026-01-02 03:04:05" in markup
        assert "25% rendering" in markup
        assert "{&#x27;to&#x27;: &#x27;ada&#x27;}" in markup
        assert "last error" not in markup  # empty fields are left out

    def test_undecodable_payload_is_described(self) -> None:
        broken = job(content_type="application/json", raw_payload=b"{not json")
        assert "9 bytes (application/json)" in broken._repr_html_()


class TestJobListHtml:
    def test_rows_and_caption(self) -> None:
        jobs = JobList((job("a"), job("b", JobState.DEAD, last_error=JobFailure(message="smtp"))))
        markup = jobs._repr_html_()
        assert "2 jobs: 1 completed, 1 dead" in markup
        assert markup.count("<tr>") == 3  # header and two rows
        assert "<code>a</code>" in markup
        assert "smtp" in markup

    def test_long_lists_are_cut(self) -> None:
        jobs = JobList(tuple(job(str(n)) for n in range(MAX_ROWS + 7)))
        markup = jobs._repr_html_()
        assert f"<code>{MAX_ROWS - 1}</code>" in markup
        assert f"<code>{MAX_ROWS}</code>" not in markup
        assert "… 7 more not shown; to_pandas() has them all" in markup

    def test_page_names_its_next_token(self) -> None:
        assert "list_jobs(page_token=&#x27;t2&#x27;)" in JobPage((job(),), "t2")._repr_html_()
        assert "page_token" not in JobPage((job(),))._repr_html_()

    def test_empty(self) -> None:
        assert "0 jobs" in JobList(())._repr_html_()


class TestReprs:
    def test_job_list(self) -> None:
        jobs = JobList((job("a"), job("b"), job("c", JobState.DEAD)))
        assert repr(jobs) == "JobList(3 jobs: 2 completed, 1 dead)"
        assert repr(JobList(())) == "JobList(0 jobs)"
        assert repr(JobList((job(),))) == "JobList(1 job: 1 completed)"

    def test_job_page(self) -> None:
        assert repr(JobPage((job(),), "t")) == "JobPage(1 job: 1 completed, next_page_token='t')"

    def test_queue_stats_shows_what_is_not_zero(self) -> None:
        stats = QueueStats(
            queue="emails", pending=3, dead=1, workers=2, oldest_pending_age=timedelta(seconds=90)
        )
        assert repr(stats) == (
            "QueueStats(queue='emails', pending=3, dead=1, workers=2, oldest_pending_age=1m30s)"
        )
        assert repr(QueueStats(queue="q")) == "QueueStats(queue='q')"

    def test_schedule_timetable_in_words(self) -> None:
        every = Schedule(name="n", type="t", interval=timedelta(hours=1, minutes=30))
        assert every.every == "every 1h30m"
        assert Schedule(name="n", type="t", cron="0 9 * * *").every == "0 9 * * *"

    @pytest.mark.parametrize(
        ("span", "text"),
        [
            (timedelta(seconds=0.25), "0.25s"),
            (timedelta(seconds=45), "45s"),
            (timedelta(minutes=5), "5m"),
            (timedelta(days=1, seconds=1), "1d1s"),
        ],
    )
    def test_duration_text(self, span: timedelta, text: str) -> None:
        assert duration_text(span) == text


class TestStatsAndSchedules:
    def test_stats_list_stays_a_list(self) -> None:
        rows = QueueStatsList([QueueStats(queue="a"), QueueStats(queue="b")])
        assert isinstance(rows, list)
        assert rows == [QueueStats(queue="a"), QueueStats(queue="b")]
        assert QueueStatsList() == []
        [first, _] = rows
        assert first.queue == "a"

    def test_stats_html(self) -> None:
        markup = QueueStatsList([QueueStats(queue="emails", completed=7, workers=1)])._repr_html_()
        assert "queue statistics (1 queue)" in markup
        assert f'background:{STATE_COLOURS["completed"]}">completed</span></th>' in markup
        assert "<td style" in markup
        assert ">7</td>" in markup

    def test_schedule_run_times_in_its_own_zone(self) -> None:
        schedule = Schedule(
            name="daily",
            type="report",
            cron="0 9 * * *",
            time_zone="America/New_York",
            next_run_time=datetime(2026, 1, 5, 14, 0, tzinfo=UTC),
        )
        markup = ScheduleList([schedule])._repr_html_()
        assert "1 schedule" in markup
        assert "2026-01-05 09:00:00 EST" in markup
        assert ">active</span>" in markup

    def test_schedule_states(self) -> None:
        paused = Schedule(name="p", type="t", cron="* * * * *", paused=True)
        failing = Schedule(name="f", type="t", cron="* * * * *", last_error="no handler")
        assert ">paused</span>" in paused._repr_html_()
        assert ">error</span> no handler" in failing._repr_html_()


class TestPandas:
    def test_jobs(self) -> None:
        frame = JobList(
            (
                job("a", progress=JobProgress(current=1, total=4, message="m")),
                job("b", JobState.DEAD, last_error=JobFailure(message="smtp", type="OSError")),
            )
        ).to_pandas()
        assert list(frame["id"]) == ["a", "b"]
        assert list(frame["state"]) == ["completed", "dead"]
        assert frame.loc[0, "progress"] == 0.25
        assert frame.loc[1, "last_error_type"] == "OSError"
        assert frame.loc[0, "create_time"] == pd.Timestamp(CREATED)

    def test_empty_keeps_its_columns(self) -> None:
        frame = JobPage(()).to_pandas()
        assert frame.empty
        assert "state" in frame.columns

    def test_stats(self) -> None:
        frame = QueueStatsList([QueueStats(queue="q", pending=2)]).to_pandas()
        assert frame.loc[0, "queue"] == "q"
        assert frame.loc[0, "pending"] == 2

    def test_schedules(self) -> None:
        frame = ScheduleList([Schedule(name="n", type="t", cron="* * * * *")]).to_pandas()
        assert list(frame["name"]) == ["n"]

    def test_without_pandas_the_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
        # Commands that work from a clone, where the distributions are not on an index.
        hint = (
            r"pip install pandas \(from the repository root: "
            r"pip install './packages/jobwire-client\[pandas\]'\)"
        )
        with pytest.raises(ImportError, match=hint):
            JobList(()).to_pandas()
