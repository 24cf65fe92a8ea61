"""Scale-up under crashes and missing capacity.

Invariant 1: a worker dying between any two steps of a launch, with the queue delivering the
message again, still gives one VM per job attempt. Invariant 2 with spot capacity missing: the
fallback chain ends on on-demand; with no capacity at all the message ends in the dead-letter
queue with its reason, leaving no VM, no claim and no runner registration behind.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from e2e_support import (
    POOL,
    QUIET,
    NoCapacity,
    dead_letters,
    describe,
    launches_per_job,
    queue_jobs,
    record,
    runner_records,
    running_vms,
    wait_completed,
    wait_for,
)
from jitr_core.messages import decode
from jitr_functions.sandbox import SandboxFaults, SimulatedCrash, VMFaults

# scaleup's checkpoints: a broker pool's VM pulls a config minted when it asks, so none is minted here
STEPS = {"broker": ("claimed", "launched", "recorded"), "metadata": ("claimed", "minted", "launched", "recorded")}
ONE_REPO_EACH = {"octo-org": ["api", "web", "docs"], "mona": ["dotfiles"]}


@pytest.mark.parametrize("handoff", ["broker", "metadata"])
def test_a_crash_between_any_two_steps_still_launches_one_vm_per_job(e2e_sandbox, handoff: str):
    """Each checkpoint makes one worker die once; the queue redelivers and the launch completes."""
    pool = {**POOL, "handoff": handoff}
    sandbox = e2e_sandbox(pools=[pool], installations=ONE_REPO_EACH, intervals=QUIET, settings={"claim_timeout_s": 2})
    crashed: dict[str, int] = {}
    lock = threading.Lock()

    def crash_once_per_step(step: str) -> None:
        with lock:
            if step in crashed:
                return
            crashed[step] = 1
        raise SimulatedCrash(f"worker died after step {step!r}")

    sandbox.app.scaleup.checkpoint = crash_once_per_step
    jobs = queue_jobs(sandbox, 4)  # one job per repository: no runner can take another's job

    wait_completed(sandbox, jobs, 60)

    assert set(crashed) == set(STEPS[handoff])
    assert launches_per_job(sandbox) == Counter({job: 1 for job in jobs}), describe(sandbox, jobs)
    wait_for(
        lambda: all(r.state == "finished" for r in runner_records(sandbox)) and not running_vms(sandbox),
        60,
        "runners to finish",
        detail=lambda: describe(sandbox, jobs),
    )
    assert {r.key for r in runner_records(sandbox)} == set(sandbox.vms.launches)
    # the registration minted before a crash was replaced, not left behind as a ghost
    assert not [r for r in sandbox.sim.runners() if r.name.startswith("jitr-")]


def test_no_spot_capacity_anywhere_falls_back_to_on_demand(e2e_sandbox):
    no_spot = NoCapacity()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-no-spot", no_spot)])
    [job] = queue_jobs(sandbox, 1)

    wait_completed(sandbox, [job], 60)

    tried = [(r.machine_type, r.placement, r.spot) for r in no_spot.requests]
    spot_candidates = [(t, z, True) for t in POOL["machine_types"] for z in POOL["placements"]]
    assert tried == [*spot_candidates, (POOL["machine_types"][0], POOL["placements"][0], False)]
    assert len({r.idempotency_token for r in no_spot.requests}) == len(tried)  # one token per candidate
    [runner] = runner_records(sandbox)
    assert runner.data["spot"] is False and runner.data["machine_type"] == POOL["machine_types"][0]
    assert launches_per_job(sandbox) == Counter({job: 1})


def test_no_capacity_at_all_dead_letters_the_job_and_leaves_nothing_behind(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(capacity=1.0)))
    [job] = queue_jobs(sandbox, 1)

    letters = wait_for(lambda: dead_letters(sandbox, "jobs"), 60, "the job message to be dead-lettered")

    [(body, reason)] = letters
    assert decode(body).job_id == job
    # the last try's error, or the receive limit when a slow last try outlived its visibility timeout
    assert reason.startswith("failed on its last try: no capacity for pool") or "max_receive_count" in reason, reason
    receives = 5  # the sandbox's max_receive_count
    candidates = len(POOL["machine_types"]) * len(POOL["placements"]) * 2  # spot, then on-demand
    # each delivery walks every candidate; on a busy machine a pass can outlive the 1 s visibility
    # timeout, and the redelivered copy walks them once more before the count reaches the limit
    assert sandbox.vms.capacity_errors % candidates == 0
    assert sandbox.vms.capacity_errors >= receives * candidates
    assert not sandbox.vms.launches and not running_vms(sandbox)
    assert runner_records(sandbox) == []  # every claim was released
    assert not [r for r in sandbox.sim.runners() if r.name.startswith("jitr-")]  # and every registration
    assert record(sandbox, "job", job).state == "queued"
    assert sandbox.sim.job(job).status == "queued"
