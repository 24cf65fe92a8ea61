"""``kill -9`` of ``jitr serve`` in the middle of a burst, then a restart on the same state directory.

``jitr serve`` runs as a real process with a TOML configuration; the GitHub simulator delivers
webhooks to it over HTTP, and each local VM runs the simulator's runner agent, so the VMs outlive
the killed server as they would outlive a crashed control plane.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from e2e_support import LABELS, get, wait_for
from jitr_core.model import IN_FLIGHT_RUNNER_STATES, RecordQuery
from jitr_core.settings import Settings
from jitr_functions.app import build_app
from jitr_functions.local import free_port
from jitr_github.simulator import GitHubSimulator

SECRET = "whsec-chaos-test-0123456789"
JOBS = 10
CLAIM_TIMEOUT_S = 2
REBALANCER_S = 1
ACTIVE_VMS = "SELECT count(*) FROM vms WHERE state IN ('pending', 'running')"


def _config(tmp_path: Path, sim: GitHubSimulator) -> Path:
    labels = ", ".join(f'"{label}"' for label in LABELS)
    agent = f"{sys.executable} -m jitr_github.simulator.agent --job-seconds 0.3 --wait-seconds 30"
    (tmp_path / "webhook_secret").write_text(SECRET)
    (tmp_path / "app.pem").write_text(sim.private_key_pem)
    config = tmp_path / "jitr.toml"
    config.write_text(f"""
log_level = "INFO"
claim_timeout_s = {CLAIM_TIMEOUT_S}
ghost_grace_s = 1
stuck_after_s = 3
boot_timeout_s = 20
rebalance_grace_s = 0
redelivery_interval_s = 0

[github]
app_id = "{sim.app_id}"
api_url = "{sim.base_url}"

[secrets]
webhook_secret = "file:{tmp_path / "webhook_secret"}"
github_app_private_key = "file:{tmp_path / "app.pem"}"

[embedded]
state_dir = "{tmp_path / "state"}"
runner_command = "{agent}"
launch_grace_s = 1
terminate_grace_s = 1

[serve]
scaledown_interval_s = 2
rebalancer_interval_s = {REBALANCER_S}
visibility_timeout_s = 2

[[pools]]
name = "linux"
labels = [{labels}]
machine_types = ["local"]
max_runners = 20
""")
    return config


class Serve:
    """``jitr serve`` as a child process on a port of its own; the simulator delivers to it."""

    def __init__(self, config: Path, log: Path, sim: GitHubSimulator, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("JITR_")}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jitr_functions", "serve", "--config", str(config), "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(self._healthy, 60, "jitr serve to answer /healthz", step_s=0.1, detail=log.read_text)
        sim.set_webhook(self.url + "/webhook", SECRET)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return get(self.url + "/healthz", timeout_s=2) == (200, {"status": "ok"})
        except OSError:
            return False


def _active_vms(state_dir: Path) -> int:
    database = state_dir / "jitr.sqlite3"
    if not database.exists():
        return 0  # serve creates its state on start
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(ACTIVE_VMS).fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0  # serve creates its tables on first use
        raise
    finally:
        conn.close()


def test_kill_9_mid_burst_then_restart_serves_every_job_and_leaves_nothing(tmp_path: Path) -> None:
    with GitHubSimulator() as sim:
        sim.add_installation("octo-org", repos=["api"])
        config = _config(tmp_path, sim)
        log = tmp_path / "serve.log"
        first = Serve(config, log, sim)
        jobs = [sim.queue_job("octo-org/api", LABELS, name=f"burst-{i}") for i in range(JOBS)]
        wait_for(lambda: _active_vms(tmp_path / "state") >= 3, 60, "the burst to be launching", detail=log.read_text)

        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
        # on the same port: the VMs the killed server launched ask its broker (serve's own) there
        second = Serve(config, log, sim, port=first.port)
        try:
            # a job left behind is found by the rebalancer, a dead claim lives claim_timeout_s
            wait_for(
                lambda: all(sim.job(j).status == "completed" for j in jobs),
                CLAIM_TIMEOUT_S + REBALANCER_S + 20,
                "every job to get a runner and complete after the restart",
                step_s=0.1,
                detail=lambda: [(j, sim.job(j).status) for j in jobs] + [log.read_text()[-4000:]],
            )
        finally:
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(30) == 0, log.read_text()
        assert all(sim.job(j).conclusion == "success" for j in jobs)

        # one scale-down pass, at a time past every grace period: every VM, claim and GitHub
        # registration goes (a lease the killed server held does not block it)
        app = build_app(Settings.from_toml(config), environ={}, clock=lambda: time.time() + 60)
        report = app.scaledown.run()
        assert "skipped" not in report, report

        def clean() -> bool:
            vms = [vm for vm in app.backend.list_vms() if vm.running]
            return not vms and _active_vms(tmp_path / "state") == 0 and not sim.runners()

        wait_for(
            clean,
            60,
            "one scale-down pass to end every VM and remove every GitHub registration",
            step_s=0.5,
            detail=lambda: (report, app.backend.list_vms(), [r.name for r in sim.runners()]),
        )
        in_flight = [r.key for s in IN_FLIGHT_RUNNER_STATES for r in app.backend.query_all(RecordQuery("runner", s))]
        assert in_flight == []
