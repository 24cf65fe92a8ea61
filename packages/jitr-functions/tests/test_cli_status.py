"""``jitr status`` prints names from payloads without letting them shape the terminal output, and
only reads: with no state yet it says so and creates none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.model import QueueMessage, Record
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_functions.cli import main


def test_text_status_escapes_control_characters_in_names(capsys, tmp_path: Path) -> None:
    config = tmp_path / "jitr.toml"
    config.write_text(f'[embedded]\nstate_dir = "{tmp_path / "state"}"\n')
    backend = Backend(create_plugin_manager(), Settings.from_toml(config))
    hostile = "octo-org/api\n  job 1 running injected\x1b[2J"
    data = {"repository": hostile, "attempt": 1, "launched_runner": None}
    assert backend.create(Record("job", "41", "queued", pool="linux", data=data))
    backend.dead_letter("jobs", QueueMessage("{}", {"job_id": "41"}), "reason\nwith a line break")

    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out

    assert out.splitlines() == [
        "1 open jobs, 0 runners in flight, 1 dead letters",
        "  job 41           queued    octo-org/api\\n  job 1 running injected\\x1b[2J attempt=1",
        "  dead letter on jobs      job=41 reason\\nwith a line break",
    ]


def test_text_timeline_escapes_control_characters_in_names(capsys, tmp_path: Path) -> None:
    config = tmp_path / "jitr.toml"
    config.write_text(f'[embedded]\nstate_dir = "{tmp_path / "state"}"\n')
    backend = Backend(create_plugin_manager(), Settings.from_toml(config))
    hostile = "jitr-linux-41-1\n  injected\x1b[2J"
    timeline = [
        {"t": 1700000000.0, "event": "received", "via": "webhook"},
        {
            "t": 1700000000.25,
            "event": "launch",
            "candidate": "m7/zone-a/spot",
            "outcome": "no-capacity",
            "code": "E\r1",
        },
        {"t": 1700000001.5, "event": "in_progress\x07", "runner": hostile},
    ]
    data = {"repository": "octo-org/api\x1b]0;x", "attempt": 1, "launched_runner": hostile, "timeline": timeline}
    data["timeline_dropped"] = 3
    assert backend.create(Record("job", "41", "running", pool="linux", data=data))

    assert main(["status", "--config", str(config), "--job", "41"]) == 0
    out = capsys.readouterr().out

    assert out.splitlines() == [
        "job 41 running octo-org/api\\x1b]0;x pool=linux attempt=1 runner=jitr-linux-41-1\\n  injected\\x1b[2J",
        "  (3 earlier steps dropped)",
        "  2023-11-14 22:13:20.000Z    +0.000s received     via=webhook",
        "  2023-11-14 22:13:20.250Z    +0.250s launch       candidate=m7/zone-a/spot outcome=no-capacity code=E\\r1",
        "  2023-11-14 22:13:21.500Z    +1.500s in_progress\\x07 runner=jitr-linux-41-1\\n  injected\\x1b[2J",
    ]


@pytest.fixture
def default_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings left to their defaults (no ``JITR_*`` variable, no file): the default state directory,
    under a fresh ``XDG_STATE_HOME``."""
    for name in [name for name in os.environ if name.startswith("JITR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "xdg" / "jitr"


@pytest.mark.parametrize(
    ("shown", "answer"),
    [
        ([], "0 open jobs, 0 runners in flight, 0 dead letters\n"),
        (["--json"], json.dumps({"runners": [], "jobs": [], "warm_vms": [], "dead_letters": []}, indent=2) + "\n"),
        (["--pools"], "pools over the last 1h\n"),
        (["--pools", "--json"], json.dumps({"window_s": 3600.0, "pools": {}}, indent=2) + "\n"),
    ],
)
def test_status_with_no_state_yet_says_so_lists_nothing_and_creates_none(
    capsys: pytest.CaptureFixture[str], default_state: Path, shown: list[str], answer: str
) -> None:
    assert main(["status", *shown]) == 0
    out, err = capsys.readouterr()
    assert out == answer
    database = default_state / "jitr.sqlite3"
    assert err == f"jitr: no state at {database}: nothing has run with these settings yet (`jitr serve` creates it)\n"
    assert not default_state.parent.exists()


def test_status_of_a_job_with_no_state_yet_finds_no_record_and_creates_none(
    capsys: pytest.CaptureFixture[str], default_state: Path
) -> None:
    assert main(["status", "--job", "41"]) == 1
    assert f"jitr: no state at {default_state / 'jitr.sqlite3'}" in capsys.readouterr().err
    assert not default_state.parent.exists()
