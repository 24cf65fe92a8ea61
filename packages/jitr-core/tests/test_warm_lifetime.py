"""A warm VM's lifetime: its wait is bounded by the warm deadline, its job by ``max_lifetime_s``.

The warm VM is launched by :class:`~jitr_core.services.warm.WarmPools` through a VM provider
that records the launch (the cloud), and the script it got is run for real in the sandbox
(:mod:`jitr_core.testing.sandbox`) against a fake broker that answers 204 ("no job yet") for a
while, then hands a job's config. Times are seconds here, as the pool's are hours in use.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.broker_script import broker_prelude, fetch_fragment
from jitr_core.hookspecs import hookimpl
from jitr_core.model import LaunchRequest, LaunchResult
from jitr_core.plugins import create_plugin_manager
from jitr_core.services.records import Store
from jitr_core.services.warm import WarmPools
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext
from jitr_core.testing.environment import deadline_s, require_tool
from jitr_core.testing.sandbox import FakeCloud, Outcome, Sandbox, fake_cloud
from test_broker_script import JIT
from test_broker_script import context as broker_context

PROVIDER = "sandboxvm"
BROKER_HOST = "broker.test"
VERSION = "2.336.0"
RUNNER = "jitr-linux-7-1"
TORN_DOWN_AT = "torn-down-at"


class SandboxVMs:
    """The cloud: launches are recorded, not made; its script steps prove the VM's identity and,
    last in the teardown, delete the VM (``shutdown``), after noting when the teardown began."""

    def __init__(self) -> None:
        self.requests: list[LaunchRequest] = []

    @hookimpl
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> LaunchResult | None:
        if settings.provider("vm") != PROVIDER:
            return None
        self.requests.append(request)
        return LaunchResult(f"vm-{len(self.requests)}", PROVIDER, request.machine_type, request.placement, request.spot)

    @hookimpl
    def jitr_render_startup_script(self, context: ScriptContext) -> list[Fragment] | None:
        if context.provider != PROVIDER:
            return None
        return [
            Fragment("prelude", """jitr_identity_proof() { printf '{"token":"vm-1.secret"}'; }""", 20, PROVIDER),
            Fragment("teardown", f'date +%s.%N > "$JITR_SANDBOX/{TORN_DOWN_AT}"', 0, PROVIDER),
            Fragment("teardown", "shutdown -h now", 90, PROVIDER),
        ]


@dataclass
class BrokerCloud(FakeCloud):
    """The fake cloud, plus a broker that holds each call briefly and answers 204 until the VM has
    waited ``job_after_s`` since its first call, then hands it ``RUNNER``'s config once."""

    job_after_s: float = float("inf")
    first_call: float | None = None
    handed_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self, method: str, host: str, path: str, headers: dict[str, str], sent: bytes = b""
    ) -> tuple[int, bytes]:
        if host != BROKER_HOST:
            return super().answer(method, host, path, headers, sent)
        with self.lock:
            now = time.time()
            self.first_call = self.first_call or now
            if self.handed_at is not None:
                return 410, b'{"error": "this runner\'s config was handed over already"}'
            if now - self.first_call >= self.job_after_s:
                self.handed_at = now
                return 200, f'{{"runner_name": "{RUNNER}", "jit_config": "{JIT}"}}'.encode()
        time.sleep(0.2)  # a held call, shortened
        return 204, b""


@pytest.fixture
def vms() -> SandboxVMs:
    return SandboxVMs()


def warm_backend(tmp_path: Path, vms: SandboxVMs, lifetime_s: int, idle_s: int) -> tuple[Backend, Pool]:
    """A deployment with one warm pool on the recording cloud: boot timeout and held call 1 s each."""
    pool = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m"], "warm": 1}
    settings = Settings.from_mapping(
        {
            "provider": "embedded",
            "vm_provider": PROVIDER,
            "embedded": {"state_dir": str(tmp_path / "state")},
            "broker_url": f"http://{BROKER_HOST}/broker",
            "pools": [pool],
        }
    )
    short = replace(settings.pools[0], max_lifetime_s=lifetime_s, warm_max_idle_s=idle_s)  # below the minimums
    settings = replace(settings, pools=(short,), boot_timeout_s=1, warm_hold_s=1)
    pm = create_plugin_manager(environ={}, extra=[(PROVIDER, vms)], load_entry_points=False)
    return Backend(pm, settings), short


def launch_warm_vm(backend: Backend, pool: Pool, vms: SandboxVMs) -> LaunchRequest:
    assert WarmPools(backend, Store(backend)).launch(pool)
    [request] = vms.requests
    return request


@pytest.fixture
def cloud() -> Iterator[BrokerCloud]:
    with fake_cloud(BrokerCloud()) as served:
        assert isinstance(served, BrokerCloud)
        yield served


def run_warm_vm(tmp_path: Path, cloud: BrokerCloud, script: str) -> tuple[Outcome, float | None]:
    """Run the script on an image with the runner baked in, the runner busy until the VM ends;
    returns the outcome and when the teardown began."""
    box = Sandbox(tmp_path / "vm", cloud, prebaked_version=VERSION)
    (box.state / "run.block").touch()
    outcome = box.run(script, timeout_s=deadline_s(120))
    torn_down = box.state / TORN_DOWN_AT
    return outcome, float(torn_down.read_text()) if torn_down.exists() else None


def test_a_job_handed_to_a_warm_vm_after_a_long_wait_gets_its_whole_lifetime(
    tmp_path: Path, vms: SandboxVMs, cloud: BrokerCloud
) -> None:
    """The VM waits longer than ``max_lifetime_s`` (3 s) for a job, well within its warm deadline
    (1 + 20 + 1 s): it is not deleted while it waits, and its job runs 3 s from the handoff."""
    backend, pool = warm_backend(tmp_path, vms, lifetime_s=3, idle_s=20)
    request = launch_warm_vm(backend, pool, vms)
    cloud.job_after_s = 4

    outcome, torn_down = run_warm_vm(tmp_path, cloud, request.startup_script)

    assert cloud.handed_at is not None, outcome.log  # the VM was still there when the job came
    outcome.assert_ran_the_runner(JIT)
    assert "jitr: JIT config received from the broker for runner jitr-linux-7-1" in outcome.log
    assert torn_down is not None and torn_down - cloud.handed_at >= pool.max_lifetime_s, outcome.log
    assert "jitr: the job's maximum lifetime reached" in outcome.log
    assert "jitr: maximum lifetime reached" not in outcome.log  # the VM's own bound is further out
    assert outcome.calls[-1] == "shutdown -h now"


def test_a_warm_vm_without_a_job_ends_at_its_warm_deadline_not_at_the_jobs_lifetime(
    tmp_path: Path, vms: SandboxVMs, cloud: BrokerCloud
) -> None:
    """No job comes: the VM asks until its warm deadline (1 + 3 + 1 s), past ``max_lifetime_s``
    (3 s), then gives up and deletes itself, before its own watchdog (5 + 3 s) would."""
    backend, pool = warm_backend(tmp_path, vms, lifetime_s=3, idle_s=3)
    request = launch_warm_vm(backend, pool, vms)

    outcome, torn_down = run_warm_vm(tmp_path, cloud, request.startup_script)

    assert "jitr: no JIT config from the broker within 5 s" in outcome.log, outcome.log
    assert "maximum lifetime" not in outcome.log
    assert cloud.first_call is not None and torn_down is not None
    assert outcome.runner_argv is None and outcome.calls[-1] == "shutdown -h now"


def test_the_cloud_lets_a_warm_vm_live_its_warm_deadline_and_a_whole_job(tmp_path: Path, vms: SandboxVMs) -> None:
    """The launch's ``max_lifetime_s`` is the cloud's own limit (GCE's maxRunDuration, the embedded
    provider's), counted from the boot: the wait and a job's full lifetime fit in it."""
    backend, pool = warm_backend(tmp_path, vms, lifetime_s=3600, idle_s=3600)
    request = launch_warm_vm(backend, pool, vms)
    assert request.max_lifetime_s == backend.settings.warm_deadline_s(pool) + pool.max_lifetime_s


def test_the_warm_vm_script_passes_shellcheck(tmp_path: Path, vms: SandboxVMs) -> None:
    backend, pool = warm_backend(tmp_path, vms, lifetime_s=3600, idle_s=3600)
    request = launch_warm_vm(backend, pool, vms)
    assert "JITR_JOB_MAX_LIFETIME=3600" in request.startup_script
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    script = request.startup_script
    result = subprocess.run([shellcheck, "-s", "bash", "-"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_the_broker_deadline_counts_from_the_scripts_start(tmp_path: Path) -> None:
    """A slow install does not lengthen the wait: 3 s into the script, a 4 s deadline leaves 1 s
    (one try, then the next would end past it), not 4 s more."""
    require_tool("curl", "apt-get install curl")
    script = "\n".join(
        [
            "set -euo pipefail",
            "export JITR_RUNNER_NAME=jitr-linux-1-1",
            broker_prelude(broker_context("embedded", "http://127.0.0.1:9/broker", 4)),
            "jitr_identity_proof() { return 1; }",
            "SECONDS=3  # the install took 3 s",
            fetch_fragment("test").body,
        ]
    )
    result = subprocess.run(["bash", "-c", script], text=True, capture_output=True, timeout=deadline_s(60))
    assert result.returncode != 0 and "no JIT config from the broker within 4 s" in result.stderr
    assert result.stderr.count("no identity proof yet") == 1, result.stderr  # not 3 more seconds of asking
