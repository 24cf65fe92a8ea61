"""A job's record tells its story (``jitr status --job``), and the store gives per-pool figures
(``jitr status --pools``), from real runs against the GitHub simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e_support import POOL, QUIET, NoCapacity, queue_jobs, record, wait_completed, wait_for
from jitr_functions.cli import main
from jitr_functions.sandbox import Sandbox, SandboxFaults, VMFaults

REPO = "octo-org/api"
SPOT_CANDIDATES = len(POOL["machine_types"]) * len(POOL["placements"])


def _config(sandbox: Sandbox, tmp_path: Path) -> str:
    """A settings file reading the sandbox's store, as an operator's ``jitr status`` would."""
    config = tmp_path / "jitr.toml"
    pool = '[[pools]]\nname = "linux"\nlabels = ["self-hosted", "linux", "x64"]\nmachine_types = ["local"]\n'
    config.write_text(f'[embedded]\nstate_dir = "{sandbox.dir / "state"}"\n\n{pool}')
    return str(config)


def _events(job: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(e["event"], e.get("attempt"), e.get("outcome"), e.get("code"), e.get("reason")) for e in job["timeline"]]


def test_a_jobs_timeline_lists_capacity_errors_the_launch_a_requeue_and_the_run(e2e_sandbox, tmp_path, capsys):
    no_spot = NoCapacity()
    faults = SandboxFaults(vms=VMFaults(never_boots=1.0))
    sandbox = e2e_sandbox(
        pools=[POOL],
        faults=faults,
        intervals=QUIET,
        settings={"boot_timeout_s": 2},
        extra_plugins=[("e2e-no-spot", no_spot)],
    )
    [job] = queue_jobs(sandbox, 1, [REPO])
    first = f"jitr-linux-{job}-1"
    wait_for(lambda: first in sandbox.vms.launches, 60, "the first launch")
    faults.vms.never_boots = 0.0  # the replacement boots

    def scaled_down() -> bool:  # scale-down alone decides the requeue, once the boot timeout passed
        sandbox.app.scaledown.run()
        return record(sandbox, "runner", first).state == "retired"

    wait_for(scaled_down, 60, "the runner that never came online to be retired", step_s=0.5)
    wait_completed(sandbox, [job], 60)
    wait_for(lambda: record(sandbox, "job", job).state == "completed", 60, "the job record to complete")

    assert main(["status", "--config", _config(sandbox, tmp_path), "--job", str(job), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)

    refused = [("launch", None, "no-capacity", "InsufficientCapacity", None)] * SPOT_CANDIDATES
    launched = ("launch", None, "launched", None, None)
    assert _events(shown) == [
        ("received", None, None, None, None),
        ("claimed", 1, None, None, "webhook"),
        *refused,
        launched,
        ("requeued", 2, None, None, "never-came-online"),
        ("claimed", 2, None, None, "never-came-online"),
        *refused,
        launched,
        ("in_progress", None, None, None, None),
        ("completed", None, None, None, None),
    ]
    timeline = shown["timeline"]
    assert [e["t"] for e in timeline] == sorted(e["t"] for e in timeline)
    assert timeline[0]["via"] == "webhook" and timeline[1]["runner"] == first
    assert timeline[2]["candidate"] == f"{POOL['machine_types'][0]}/{POOL['placements'][0]}/spot"
    assert timeline[SPOT_CANDIDATES + 2]["candidate"] == f"{POOL['machine_types'][0]}/{POOL['placements'][0]}/on-demand"
    assert timeline[-2]["runner"] == f"jitr-linux-{job}-2" and timeline[-1]["conclusion"] == "success"
    assert shown["state"] == "completed" and shown["attempt"] == 2 and shown["timeline_dropped"] == 0

    assert main(["status", "--config", _config(sandbox, tmp_path), "--job", str(job)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"job {job} completed {REPO} pool=linux attempt=2 runner=jitr-linux-{job}-2"
    assert [line.split()[3] for line in lines[1:]] == [event for event, *_ in _events(shown)]
    assert "reason=never-came-online" in lines[SPOT_CANDIDATES + 4]

    assert main(["status", "--config", _config(sandbox, tmp_path), "--job", "999999"]) == 1
    assert "no record of job 999999" in capsys.readouterr().err


def test_status_pools_sums_up_a_small_burst(e2e_sandbox, tmp_path, capsys):
    no_spot = NoCapacity()
    sandbox = e2e_sandbox(pools=[POOL], extra_plugins=[("e2e-no-spot", no_spot)])
    jobs = queue_jobs(sandbox, 4)
    wait_completed(sandbox, jobs, 60)
    wait_for(
        lambda: all(record(sandbox, "job", job).state == "completed" for job in jobs), 60, "the job records to complete"
    )

    assert main(["status", "--config", _config(sandbox, tmp_path), "--pools", "--window", "30m", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)

    assert shown["window_s"] == 1800
    linux = shown["pools"]["linux"]
    assert linux["jobs"] == 4 and linux["states"] == {"completed": 4}
    assert linux["launch_failures"] == {"InsufficientCapacity": 4 * SPOT_CANDIDATES}
    assert linux["launches"]["spot"] == 0 and linux["launches"]["on_demand"] >= 4 and linux["spot_share"] == 0.0
    for figure in ("queue_ms", "boot_ms"):
        assert 0 <= linux[figure]["p50"] <= linux[figure]["p95"] <= linux[figure]["p99"]
    assert linux["requeues"] == {} or set(linux["requeues"]) <= {"runner-taken-by-another-job"}

    assert main(["status", "--config", _config(sandbox, tmp_path), "--pools"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pools over the last 1h"
    assert lines[1] == "  linux: 4 jobs (completed 4)"
    assert lines[4].startswith("    launches     ") and "(0% spot)" in lines[4]
    assert lines[5] == f"    launch failures InsufficientCapacity {4 * SPOT_CANDIDATES}"
