"""The notebooks in notebooks/ run end to end in a real IPython kernel (nbclient + ipykernel).

A cell that raises fails its test (nbclient raises CellExecutionError); the
checks below read what chosen cells displayed, found by their cell ids.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXECUTED = ("01_quickstart.ipynb", "02_scheduling.ipynb", "03_remote_gateway.ipynb")
WIDGET = "application/vnd.jupyter.widget-view+json"


def read(name: str) -> NotebookNode:
    notebook: NotebookNode = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    return notebook


def execute(name: str, cwd: Path) -> NotebookNode:
    """Runs the notebook in a fresh `python3` kernel started in `cwd`."""
    notebook = read(name)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return notebook


def cell(notebook: NotebookNode, cell_id: str) -> NotebookNode:
    [found] = [c for c in notebook.cells if c.get("id") == cell_id]
    assert isinstance(found, NotebookNode)
    return found


def text(notebook: NotebookNode, cell_id: str) -> str:
    """What the cell printed and the plain-text form of what it displayed."""
    parts = []
    for output in cell(notebook, cell_id).outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output.data["text/plain"] + "\n")
    return "".join(parts)


def html(notebook: NotebookNode, cell_id: str) -> str:
    outputs = cell(notebook, cell_id).outputs
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def mime_types(notebook: NotebookNode, cell_id: str) -> set[str]:
    return {mime for o in cell(notebook, cell_id).outputs for mime in o.get("data", {})}


def progress_widgets(notebook: NotebookNode) -> tuple[list[tuple[float, float, str]], str]:
    """The final state of every tqdm widget: (value, max, bar style) of each bar, and its text."""
    widgets = notebook.metadata.get("widgets", {})
    models = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [
        (model["state"]["value"], model["state"]["max"], model["state"]["bar_style"])
        for model in models.values()
        if model["model_name"] == "FloatProgressModel"
    ]
    labels = [m["state"]["value"] for m in models.values() if m["model_name"] == "HTMLModel"]
    return bars, " ".join(labels).replace("\u2007", " ")


def assert_no_stderr(notebook: NotebookNode) -> None:
    """No warnings, tracebacks or log lines anywhere (tqdm draws a widget, not text)."""
    for c in notebook.cells:
        for output in c.get("outputs", []):
            assert output.get("name") != "stderr", (c.id, output.text)


def test_notebooks_are_stored_without_outputs() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(EXECUTED)
    for name in EXECUTED:
        notebook = read(name)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3"
        for c in notebook.cells:
            if c.cell_type == "code":
                assert c.outputs == [], (name, c.id)
                assert c.execution_count is None, (name, c.id)
                assert "nest_asyncio" not in c.source
                assert "asyncio.run(" not in c.source


def test_quickstart(tmp_path: Path) -> None:
    notebook = execute("01_quickstart.ipynb", tmp_path)
    assert_no_stderr(notebook)
    assert text(notebook, "start-gateway").startswith("<EmbeddedGateway 127.0.0.1:")
    assert "state=pending" in text(notebook, "enqueue")
    assert text(notebook, "wait") == "{'width': 256}\n"
    assert "25%" not in html(notebook, "get-job")
    assert "100% pass 3 of 3" in html(notebook, "get-job")  # the handler's last progress
    # tqdm.auto drew a widget, and the jobs came back as a table.
    assert WIDGET in mime_types(notebook, "watch")
    assert "JobList(203 jobs: 202 completed, 1 dead)" in text(notebook, "watch")
    assert "203 jobs: 202 completed, 1 dead" in html(notebook, "watch")
    assert "QueueStats(queue='default', completed=203, dead=1, workers=1)" in text(
        notebook, "stats"
    )
    assert "queue statistics" in html(notebook, "stats")
    assert "no such team" in html(notebook, "dead-jobs")
    assert re.search(r"report:build\s+dead\s+1\s+no such team", text(notebook, "to-pandas"))
    assert "(report:build) is dead after 1 attempt(s): NonRetryableError: no such team" in text(
        notebook, "dead-wait"
    )
    assert text(notebook, "async-client") == "{'width': 100}\n"
    assert WIDGET in mime_types(notebook, "async-watch")
    assert "JobList(50 jobs: 50 completed)" in text(notebook, "async-watch")
    # nbclient keeps the widgets' last state: both bars ended full and green.
    bars, labels = progress_widgets(notebook)
    assert bars == [(203, 203, "success"), (50, 50, "success")]
    assert "203/203 done: 202 completed, 1 dead" in labels
    assert "async jobs: 100%" in labels
    assert list(tmp_path.iterdir()) == []  # the embedded gateway cleaned up after itself


def test_scheduling(tmp_path: Path) -> None:
    notebook = execute("02_scheduling.ipynb", tmp_path)
    assert_no_stderr(notebook)
    assert "state=scheduled" in text(notebook, "one-time")
    result = text(notebook, "one-time-result")
    assert result.startswith("report for core at ")
    lateness = re.search(r"finished ([\d.]+) s later", result)
    assert lateness is not None, result
    assert 0 <= float(lateness[1]) < 5  # never early
    assert "stored as 2031-03-31 07:00:00+00:00 = 2031-03-31 09:00:00+02:00 in Paris" in text(
        notebook, "time-zones"
    )
    assert "state=cancelled" in text(notebook, "time-zones")
    assert "timezone-aware" in text(notebook, "naive-datetime")
    assert re.search(r"= \d{4}-\d\d-\d\d 09:00:00-0[45]:00", text(notebook, "cron"))
    assert "America/New_York" in html(notebook, "cron")
    assert "every 1s" in html(notebook, "interval")
    heartbeats = re.search(r"JobList\((\d+) jobs?: (\d+) completed\)", text(notebook, "heartbeats"))
    assert heartbeats is not None
    assert heartbeats[1] == heartbeats[2]
    assert int(heartbeats[1]) >= 1
    assert "paused" in text(notebook, "pause")
    assert text(notebook, "trigger").startswith("daily-report -> report for core at ")
    frame = text(notebook, "schedules-frame")
    assert "daily-report" in frame
    assert "heartbeat" in frame


@pytest.fixture
def remote_gateway(tmp_path: Path) -> Iterator[str]:
    """`python -m jobwire.gateway` started elsewhere: a process of its own on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    with subprocess.Popen(
        [sys.executable, "-m", "jobwire.gateway", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,  # its scheduler's SQLite file lands here
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("jobwire gateway listening on "), line
            yield line.split()[-1]
        finally:
            process.terminate()
            process.wait(20)


def test_remote_gateway(
    remote_gateway: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBWIRE_GATEWAY", remote_gateway)  # the kernel inherits it
    notebook = execute("03_remote_gateway.ipynb", tmp_path)
    assert_no_stderr(notebook)
    assert text(notebook, "address") == f"'{remote_gateway}'\n"
    unreachable = text(notebook, "unreachable")
    seconds = re.match(r"failed after ([\d.]+) s:\n", unreachable)
    assert seconds is not None, unreachable
    assert float(seconds[1]) < 5
    assert "no jobwire gateway answered at 127.0.0.1:1; start one with `jobwire-gateway`" in (
        unreachable
    )
    assert "JobList(6 jobs: 5 completed, 1 dead)" in text(notebook, "enqueue-watch")
    assert WIDGET in mime_types(notebook, "enqueue-watch")
    assert text(notebook, "retried") == (
        "completed after 3 attempts: charged 10 EUR\n"
        "last failure: payment provider timed out (attempt 2)\n"
    )
    assert "mail server refused ada@example.com" in html(notebook, "dead-list")
    assert text(notebook, "dead-wait").endswith(
        "(invoice:send) is dead after 2 attempt(s): "
        "ConnectionError: mail server refused ada@example.com\n"
        "retryable: True | attempt: 2\n"
    )
    assert re.search(r"invoice:send\s+dead\s+2\s+ConnectionError", text(notebook, "billing-frame"))
    assert "QueueStats(queue='billing', completed=5, dead=1, workers=1)" in text(
        notebook, "async-stats"
    )
