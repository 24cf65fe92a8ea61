"""A burst of jobs queued at once, with the recording VM provider (no thread or process per VM):
every job launched once, none lost, GitHub calls per job counted and bounded."""

from __future__ import annotations

from collections import Counter

import pytest
from e2e_support import LABELS, POOL, QUIET, wait_for
from jitr_functions.local import Intervals
from jitr_functions.sandbox import RECORDING

JOBS = 60
MINT = "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig"
# the rebalancer runs, as in production, to repair a job whose runner a swap gave to another job
INTERVALS = Intervals(scaledown_s=3600.0, rebalancer_s=2.0, visibility_timeout_s=3)


def _burst(
    e2e_sandbox, boot_s: float | None, workers: int = 8, intervals: Intervals = INTERVALS, handoff: str = "broker"
):
    sandbox = e2e_sandbox(
        pools=[{**POOL, "max_runners": JOBS, "handoff": handoff}],
        intervals=intervals,
        workers=workers,
        vm_provider=RECORDING,
        boot_s=boot_s,
        settings={"max_runners": JOBS},
    )
    repos = sandbox.repositories
    ids = [sandbox.sim.queue_job(repos[i % len(repos)], LABELS) for i in range(JOBS)]
    return sandbox, ids


def test_a_burst_launches_every_job_once_and_loses_none(e2e_sandbox) -> None:
    # VMs boot after the burst is launched (as real VMs, which take far longer to boot than a launch)
    sandbox, ids = _burst(e2e_sandbox, boot_s=None)
    wait_for(lambda: sandbox.all_launched(ids), 60, "a launch for every job of the burst")
    sandbox.vms.boot()
    wait_for(lambda: sandbox.all_done(ids), 60, "every job of the burst to complete")
    before = sum(sandbox.sim.call_counts().values())
    report = sandbox.report(ids)
    calls = sandbox.sim.call_counts()  # the rebalancer goes on calling GitHub meanwhile

    assert report["completed"] == report["jobs"] == JOBS
    assert report["lost_jobs"] == 0
    assert report["duplicate_launches"] == 0
    assert all(count == 1 for count in sandbox.vms.launches.values())  # one VM per (job, attempt)
    # a runner may take another job than its own (a swap): at most a few launches beyond one per job
    assert JOBS <= report["launches"] <= JOBS + JOBS // 10
    # one JIT config per launch; the other calls are installation tokens and the rebalancer's reads
    assert calls[MINT] == report["launches"]
    assert before <= report["github_calls"] <= sum(calls.values())
    assert set(report["pools"]) == {"linux"}
    assert report["pools"]["linux"]["jobs"] <= JOBS


@pytest.mark.parametrize("handoff", ["broker", "metadata"])
def test_recorded_vms_that_never_boot_leave_one_launch_per_job(e2e_sandbox, handoff: str) -> None:
    # no repairs: nothing to repair
    sandbox, ids = _burst(e2e_sandbox, boot_s=None, workers=4, intervals=QUIET, handoff=handoff)
    wait_for(lambda: sandbox.all_launched(ids), 60, "a launch for every job of the burst")
    report = sandbox.report(ids)

    assert report["launches"] == JOBS and report["surplus_launches"] == 0
    assert report["duplicate_launches"] == 0
    assert Counter(sandbox.sim.job(job_id).status for job_id in ids) == {"queued": JOBS}  # nothing ran them
    if handoff == "broker":  # a config is minted when its VM asks: none asked, GitHub was not called
        assert report["github_calls"] == 0
    else:  # GitHub calls per job: one JIT config each, plus one installation token per tenant
        assert report["github_calls"] == sandbox.sim.call_counts()[MINT] + len(sandbox.installations)
        assert report["github_calls_per_job"] == round((JOBS + len(sandbox.installations)) / JOBS, 3)
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    running = {vm.runner_name for vm in sandbox.vms.jitr_list_vms(sandbox.app.settings)}
    assert running == set(sandbox.vms.launches)
