from __future__ import annotations

import pytest

from jobwire.dashboard import __version__
from jobwire.dashboard._cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"jobwire-dashboard {__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "8080"], "--listen: expected HOST:PORT such as 127.0.0.1:8080, got '8080'"),
        (["--gateway", "nowhere"], "--gateway: expected HOST:PORT"),
        (["--listen", "0.0.0.0:8080"], "needs a login: set --password"),
        (["--poll-interval", "0"], "poll interval must be above zero"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    for name in ("JOBWIRE_TOKEN", "JOBWIRE_DASHBOARD_PASSWORD", "JOBWIRE_GATEWAY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("jobwire-dashboard: error: ")
    assert message in err
    assert err.count("\n") == 1
