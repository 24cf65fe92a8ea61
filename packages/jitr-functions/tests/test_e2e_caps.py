"""Caps under a burst (invariant 4) and overlapping periodic runs (invariant 8)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from e2e_support import (
    LABELS,
    POOL,
    QUIET,
    Gate,
    assert_vms_accounted,
    queue_jobs,
    record,
    running_vms,
    set_faults,
    store_rows,
    wait_completed,
    wait_for,
)
from jitr_core.messages import decode
from jitr_functions.local import Intervals
from jitr_functions.sandbox import SandboxFaults, VMFaults

ARM_LABELS = ["self-hosted", "linux", "arm64"]
CAPPED_POOLS = [
    {**POOL, "max_runners": 3},
    {**POOL, "name": "arm", "labels": ARM_LABELS, "max_runners": 3},
]


HOLDING_A_VM = "SELECT key FROM records WHERE kind = 'runner' AND state IN ('launched', 'busy')"


class Sampler(threading.Thread):
    """Samples, from its own thread, what is in flight per pool: runner records holding a VM in
    the store (launched or busy; a claim over the cap is deleted before it launches anything),
    runners busy on GitHub and VMs running in the simulated cloud."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(daemon=True)
        self.sandbox = sandbox
        self.stop = threading.Event()
        self.peaks: dict[str, Counter[str]] = {"store": Counter(), "github-busy": Counter(), "vms": Counter()}
        self.samples = 0

    @staticmethod
    def _pool(runner_name: str) -> str:
        return runner_name.split("-")[1]

    def _peak(self, what: str, names: list[str]) -> None:
        counts = Counter(self._pool(n) for n in names)
        counts["total"] = len(names)
        for key, value in counts.items():
            self.peaks[what][key] = max(self.peaks[what][key], value)

    def run(self) -> None:
        while not self.stop.is_set():
            rows = store_rows(self.sandbox, HOLDING_A_VM)
            self._peak("store", [key for (key,) in rows])
            self._peak("github-busy", [r.name for r in self.sandbox.sim.runners() if r.busy])
            self._peak("vms", list(running_vms(self.sandbox).values()))
            self.samples += 1
            time.sleep(0.01)


def test_caps_hold_under_a_burst_and_every_job_completes(e2e_sandbox):
    """Thirty jobs at once for two pools of three runners under a global cap of five. Jobs over a
    cap wait; scale-down's stuck-job pass (fast here) re-enqueues them as slots free up."""
    sandbox = e2e_sandbox(
        pools=CAPPED_POOLS,
        settings={"max_runners": 5, "stuck_after_s": 3},
        intervals=Intervals(scaledown_s=1.0, rebalancer_s=1.0, visibility_timeout_s=2),
        faults=SandboxFaults(vms=VMFaults(job_seconds=(0.2, 0.5))),
        seed=4,
        workers=4,
    )
    sampler = Sampler(sandbox)
    sampler.start()
    repos = sandbox.repositories
    jobs = [
        sandbox.sim.queue_job(repos[i % len(repos)], LABELS if i % 2 else ARM_LABELS, name=f"burst-{i}")
        for i in range(30)
    ]

    try:
        wait_completed(sandbox, jobs, 150)
    finally:
        sampler.stop.set()
        sampler.join()

    assert sampler.samples > 50
    for what, peaks in sampler.peaks.items():
        assert peaks["total"] <= 5, f"{what}: {dict(peaks)}"
        assert peaks["linux"] <= 3 and peaks["arm"] <= 3, f"{what}: {dict(peaks)}"
    assert sampler.peaks["store"]["total"] == 5  # the caps were reached, not just respected
    assert all(sandbox.sim.job(j).conclusion == "success" for j in jobs)
    assert_vms_accounted(sandbox, jobs, timeout_s=60)


def _overlap(run, gate: Gate, which: str) -> tuple[dict, dict]:
    """Two runs at once: the first is held inside its first read until the second has answered."""
    gate.armed_for = which
    first: list[dict] = []
    holder = threading.Thread(target=lambda: first.append(run()))
    holder.start()
    assert gate.entered.wait(10), "the first run never reached its first read"
    gate.armed_for = None
    second = run()
    gate.release.set()
    holder.join(30)
    return first[0], second


def test_overlapping_scaledown_runs_act_once(e2e_sandbox):
    gate = Gate()
    sandbox = e2e_sandbox(
        pools=[POOL],
        intervals=QUIET,
        settings={"ghost_grace_s": 1, "stuck_after_s": 1},
        faults=SandboxFaults(vms=VMFaults(never_boots=1.0)),
        extra_plugins=[("e2e-gate", gate)],
    )
    [job] = queue_jobs(sandbox, 1, ["octo-org/api"])
    name = f"jitr-linux-{job}-1"
    wait_for(lambda: name in running_vms(sandbox).values(), 60, "the VM")
    # forget the runner, as a lost write would: its VM is now an orphan, its job stuck
    sandbox.app.backend.delete("runner", name)
    time.sleep(1.2)  # past the grace periods
    [vm_id] = running_vms(sandbox)

    first, second = _overlap(sandbox.app.scaledown.run, gate, "list_vms")

    assert second == {"skipped": "another scaledown run holds the lease"}
    assert first.get("orphan-vms") == 1 and first.get("stuck-jobs") == 1, first
    assert gate.terminated[vm_id] == 1
    assert record(sandbox, "job", job).data["attempt"] == 2  # re-enqueued once, not twice
    wait_for(lambda: f"jitr-linux-{job}-2" in sandbox.vms.launches, 60, "the new launch")
    assert sandbox.app.scaledown.run().get("skipped") is None  # the lease was released
    assert dict(sandbox.vms.launches) == {name: 1, f"jitr-linux-{job}-2": 1}


def test_overlapping_rebalancer_runs_act_once(e2e_sandbox):
    gate = Gate()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-gate", gate)])
    [seen] = queue_jobs(sandbox, 1, ["octo-org/api"])
    wait_completed(sandbox, [seen], 60)
    assert_vms_accounted(sandbox, [seen], scaledown=True)  # nothing idle left to take a lost job
    set_faults(sandbox, drop_webhook=1.0)
    lost = queue_jobs(sandbox, 3, ["octo-org/api"])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    sandbox.sim.fail_next(10_000, 404, path_contains="/app/hook/deliveries")

    first, second = _overlap(sandbox.app.rebalancer.run, gate, "repo-query")

    assert second == {"skipped": "another rebalancer run holds the lease"}
    assert first.get("enqueued") == len(lost), first
    wait_completed(sandbox, lost, 60)
    assert_vms_accounted(sandbox, [seen, *lost], scaledown=True)


def _deferred(sandbox: Any) -> dict[int, float]:
    """job id → when its deferred jobs-queue message is due, for deferred messages not yet due
    (never received: a message a worker holds is hidden too, but has been received)."""
    rows = store_rows(
        sandbox,
        "SELECT body, visible_at FROM messages WHERE queue = 'jobs' AND receive_count = 0 AND visible_at > ?",
        (time.time(),),
    )
    return {decode(body).job_id: visible_at for body, visible_at in rows}


def test_a_runner_leaving_flight_launches_a_job_waiting_for_its_cap_at_once(e2e_sandbox):
    """With a cap of one, a job queued while the only runner is busy waits with a long deferral;
    the runner finishing sends it on at once: every job completes while the deferral is not due."""
    sandbox = e2e_sandbox(
        pools=[{**POOL, "max_runners": 1}],
        settings={"cap_wait_s": 600},
        intervals=QUIET,
        faults=SandboxFaults(vms=VMFaults(job_seconds=(4.0, 4.0))),
    )
    [first] = queue_jobs(sandbox, 1, ["octo-org/api"])
    wait_for(lambda: (r := record(sandbox, "runner", f"jitr-linux-{first}-1")) and r.state == "busy", 60, "busy")
    second = sandbox.sim.queue_job("octo-org/api", LABELS, name="second")
    wait_for(lambda: second in _deferred(sandbox), 60, "the second job to wait for the cap")

    wait_completed(sandbox, [first, second], 60)

    assert second in _deferred(sandbox), "launched by its deferred message, not by the finishing runner"
    # GitHub reports the jobs done before jitr's lifecycle has read it: a scale-down pass in
    # between would retire the second runner (its VM gone, GitHub no longer listing it) instead
    runners = [f"jitr-linux-{job}-1" for job in (first, second)]
    wait_for(
        lambda: all((r := record(sandbox, "runner", name)) and r.state == "finished" for name in runners),
        60,
        "both runners to be recorded finished",
    )
    assert_vms_accounted(sandbox, [first, second], exact=True, scaledown=True)


def test_a_runner_retired_as_surplus_launches_a_job_waiting_for_its_cap_at_once(e2e_sandbox):
    """The same through a retirement: the first job is cancelled while its runner has not come
    online, the runner is retired as surplus, and the job waiting for the cap launches at once."""
    sandbox = e2e_sandbox(
        pools=[{**POOL, "max_runners": 1}],
        settings={"cap_wait_s": 600},
        intervals=QUIET,
        faults=SandboxFaults(vms=VMFaults(never_boots=1.0)),
    )
    [first] = queue_jobs(sandbox, 1, ["octo-org/api"])
    name = f"jitr-linux-{first}-1"
    wait_for(lambda: (r := record(sandbox, "runner", name)) and r.state == "launched", 60, "the first launch")
    second = sandbox.sim.queue_job("octo-org/api", LABELS, name="second")
    wait_for(lambda: second in _deferred(sandbox), 60, "the second job to wait for the cap")
    sandbox.vms.faults = VMFaults()

    sandbox.sim.cancel_job(first)
    wait_completed(sandbox, [second], 60)

    assert second in _deferred(sandbox), "launched by its deferred message, not by the retirement"
    assert record(sandbox, "runner", name).state == "retired"
    assert dict(sandbox.vms.launches) == {name: 1, f"jitr-linux-{second}-1": 1}
