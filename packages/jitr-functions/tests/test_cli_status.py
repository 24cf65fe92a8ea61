"""``jitr status`` prints names from payloads without letting them shape the terminal output."""

from __future__ import annotations

from pathlib import Path

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
