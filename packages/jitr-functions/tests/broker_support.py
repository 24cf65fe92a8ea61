"""A broker-mode deployment of ``jitr serve`` for the end-to-end tests: the embedded backend with
real local VMs (each runs its startup script, then the simulator's runner agent), the local
runtime's HTTP server with ``POST /broker`` and the GitHub simulator over HTTP; and how a test
plays a VM (its per-VM token, its call to the broker)."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_support import QUIET, post, runners_in, wait_for
from jitr_core.settings import Settings
from jitr_functions.app import App, build_app
from jitr_functions.local import LocalRuntime, free_port
from jitr_github.simulator import GitHubSimulator
from jitr_github.simulator.jitconfig import decode_jit_config

SECRET = "whsec-broker-test-0123456789"
AGENT = f"{sys.executable} -m jitr_github.simulator.agent --job-seconds 0.2 --wait-seconds 30"
# The runner: notes a digest of the config it was given and whether the VM token reached it.
RUNNER_COMMAND = (
    'printf %s "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" | sha256sum | cut -d" " -f1 > runner-config.sha256; '
    '[ -z "${JITR_VM_TOKEN:-}" ] || echo leaked > runner-token-leaked; '
    f"exec {AGENT}"
)
JSON = {"Content-Type": "application/json"}


@dataclass
class Deployment:
    app: App
    runtime: LocalRuntime
    sim: GitHubSimulator
    dir: Path
    log: io.StringIO

    @property
    def broker(self) -> str:
        return self.runtime.url + "/broker"

    def runner(self, name: str) -> Any:
        return self.app.backend.load("runner", name)

    def runners(self) -> list[Any]:
        return runners_in(self.app.backend)

    def vm_rows(self) -> list[tuple[Any, ...]]:
        import sqlite3

        conn = sqlite3.connect(f"file:{self.dir / 'state' / 'jitr.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT vm_id, runner_name, dir, state, pid FROM vms").fetchall()
        finally:
            conn.close()

    def jit_configs(self) -> list[str]:
        return [s for s in self.sim.secrets_issued() if is_jit_config(s)]


def is_jit_config(value: str) -> bool:
    try:
        decode_jit_config(value)
    except ValueError:
        return False
    return True


def start_deployment(
    tmp_path: Path,
    pools: list[dict[str, Any]],
    *,
    broker_url: str | None = None,
    plugins: tuple[tuple[str, object], ...] = (),
    **extra: Any,
) -> Deployment:
    """A running deployment whose VMs reach the broker at ``broker_url`` (default: its own)."""
    sim = GitHubSimulator()
    api_url = sim.start()
    sim.add_installation("octo-org", repos=["api", "web"])
    (tmp_path / "webhook_secret").write_text(SECRET)
    (tmp_path / "app.pem").write_text(sim.private_key_pem)
    port = free_port()
    data: dict[str, Any] = {
        "provider": "embedded",
        "github": {"app_id": str(sim.app_id), "api_url": api_url},
        "secrets": {
            "webhook_secret": f"file:{tmp_path / 'webhook_secret'}",
            "github_app_private_key": f"file:{tmp_path / 'app.pem'}",
        },
        "embedded": {
            "state_dir": str(tmp_path / "state"),
            "runner_command": RUNNER_COMMAND,
            "launch_grace_s": 1,
            "terminate_grace_s": 1,
        },
        "pools": pools,
        "broker_url": broker_url or f"http://127.0.0.1:{port}/broker",
        "boot_timeout_s": 60,
        "claim_timeout_s": 2,
        "ghost_grace_s": 2,
        "stuck_after_s": 60,
        "rebalance_grace_s": 0,
        **extra,
    }
    log = io.StringIO()
    settings = Settings.from_mapping(data, source="broker-test")
    app = build_app(settings, environ={}, log_stream=log, extra_plugins=plugins)
    runtime = LocalRuntime(app, port=port, workers=2, intervals=QUIET).start()
    sim.set_webhook(runtime.url + "/webhook", SECRET)
    return Deployment(app, runtime, sim, tmp_path, log)


def stop_deployment(d: Deployment) -> None:
    for vm in d.app.backend.list_vms():
        if vm.running:
            d.app.backend.terminate_vm(vm.vm_id)
    d.runtime.stop(timeout_s=5.0)
    d.sim.stop()


def vm_token(d: Deployment, runner_name: str) -> tuple[str, str]:
    """(vm id, token) of the running VM of ``runner_name``, read from its process's environment."""

    def running() -> tuple[str, str] | None:
        for vm_id, name, _, state, pid in d.vm_rows():
            if name == runner_name and state == "running" and pid:
                # read again until found: while the process execs its script the file may read empty
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                token = next((v.split(b"=", 1)[1] for v in environ if v.startswith(b"JITR_VM_TOKEN=")), None)
                return (vm_id, token.decode()) if token else None
        return None

    return wait_for(running, 60, f"the VM of {runner_name} to run")


def ask(d: Deployment, runner_name: str, token: str, provider: str = "embedded") -> tuple[int, dict[str, Any]]:
    body = json.dumps({"runner_name": runner_name, "provider": provider, "proof": {"token": token}}).encode()
    return post(d.broker, body, JSON)
