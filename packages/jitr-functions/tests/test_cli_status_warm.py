"""``jitr status`` lists warm VMs: waiting ones, and the runner one was assigned to."""

from __future__ import annotations

import json
from pathlib import Path

from jitr_core.backend import Backend
from jitr_core.model import Record
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_functions.cli import main


def test_status_lists_warm_vms(capsys, tmp_path: Path) -> None:
    config = tmp_path / "jitr.toml"
    config.write_text(f'[embedded]\nstate_dir = "{tmp_path / "state"}"\n')
    backend = Backend(create_plugin_manager(), Settings.from_toml(config))
    assert backend.create(Record("warm", "jitr-linux-warm-0123456789", "waiting", pool="linux", data={"vm_id": "v1"}))
    assigned = {"vm_id": "v2", "runner_name": "jitr-linux-7-1"}
    assert backend.create(Record("warm", "jitr-linux-warm-abcdef0123", "assigned", pool="linux", data=assigned))

    assert main(["status", "--config", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["warm_vms"]
    assert sorted((vm["name"], vm["state"], vm["runner"]) for vm in listed) == [
        ("jitr-linux-warm-0123456789", "waiting", None),
        ("jitr-linux-warm-abcdef0123", "assigned", "jitr-linux-7-1"),
    ]
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  warm vm jitr-linux-warm-0123456789" in "\n".join(out) and any("runner=jitr-linux-7-1" in o for o in out)
