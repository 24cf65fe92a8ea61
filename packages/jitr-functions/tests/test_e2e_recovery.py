"""Recovery in seconds: a worker that dies right after claiming does not starve other jobs.

GitHub gives a job to any idle runner with matching labels, so the claim a dead worker left for
job A is handed to job B as its spare when A takes B's runner. That claim launches nothing:
B must still get a runner within the claim timeout, not a scale-down interval later.
"""

from __future__ import annotations

import threading

from e2e_support import (
    POOL,
    QUIET,
    assert_one_vm_per_attempt,
    describe,
    in_flight_records,
    queue_jobs,
    record,
    running_vms,
    wait_completed,
    wait_for,
)
from jitr_functions.local import Intervals
from jitr_functions.sandbox import SimulatedCrash

CLAIM_TIMEOUT_S = 3
# Periodic functions never tick: only the queue's redelivery can repair the dead claim.
NO_PERIODIC = Intervals(scaledown_s=QUIET.scaledown_s, rebalancer_s=QUIET.rebalancer_s, visibility_timeout_s=1)


def test_a_claim_left_by_a_dead_worker_is_resumed_for_the_job_it_was_handed_to(e2e_sandbox):
    sandbox = e2e_sandbox(
        # a runner that takes a job before its launch is recorded has its config from the script:
        # the broker answers a VM only once its launch is recorded
        pools=[{**POOL, "handoff": "metadata"}],
        installations={"octo-org": ["api"]},
        intervals=NO_PERIODIC,
        # A's message must still be redelivered when B's runner has taken A, however slow the machine
        settings={"claim_timeout_s": CLAIM_TIMEOUT_S, "embedded": {"max_receive_count": "60"}},
    )
    died = threading.Event()
    jobs: list[int] = []

    def die_once_after_claiming(step: str) -> None:
        if step == "claimed" and not died.is_set():
            died.set()
            raise SimulatedCrash("worker died after step 'claimed'")
        if step == "launched":
            # B's runner boots and takes A before B's worker records its launch: the swap
            # happens first, and recording the launch must not undo it
            wait_for(lambda: record(sandbox, "job", jobs[0]).state != "queued", 60, "job A to be taken")

    sandbox.app.scaleup.checkpoint = die_once_after_claiming
    [job_a] = jobs[:] = queue_jobs(sandbox, 1)
    wait_for(died.is_set, 60, "the worker launching job A to die")
    [job_b] = queue_jobs(sandbox, 1)

    # B's runner takes A (the oldest queued job); B is left with A's dead claim as its spare
    wait_completed(sandbox, [job_a, job_b], 60)

    assert_one_vm_per_attempt(sandbox)
    wait_for(
        lambda: not in_flight_records(sandbox) and not running_vms(sandbox),
        60,
        "no claim, runner or VM left in flight",
        detail=lambda: describe(sandbox, [job_a, job_b]),
    )
    assert record(sandbox, "job", job_b).state == "completed"


def test_a_claim_whose_vm_was_launched_and_noted_is_resumed_for_the_job_it_was_handed_to(e2e_sandbox):
    """As above, but A's worker dies after launching A's VM, and a scale-down pass notes that VM
    on the claim before A's message comes back: the launch is resumed (recorded) for B, whose
    broker VM is then answered."""
    sandbox = e2e_sandbox(
        pools=[{**POOL, "handoff": "broker"}],
        installations={"octo-org": ["api"]},
        intervals=NO_PERIODIC,
        settings={"claim_timeout_s": 5, "embedded": {"max_receive_count": "60"}},
    )
    died = threading.Event()

    def die_once_after_launching(step: str) -> None:
        if step == "launched" and not died.is_set():
            died.set()
            raise SimulatedCrash("worker died after step 'launched'")

    sandbox.app.scaleup.checkpoint = die_once_after_launching
    [job_a] = queue_jobs(sandbox, 1)
    wait_for(died.is_set, 60, "the worker launching job A to die")
    [job_b] = queue_jobs(sandbox, 1)
    a_claim = f"jitr-linux-{job_a}-1"
    # B's runner takes A; B is left with A's claim, whose VM waits for the broker

    def swapped() -> bool:
        b = record(sandbox, "job", job_b)
        return b is not None and b.data.get("launched_runner") == a_claim

    wait_for(swapped, 60, "the swap", detail=lambda: describe(sandbox, [job_a, job_b]))
    sandbox.app.scaledown.run()
    noted = record(sandbox, "runner", a_claim)
    assert noted.state == "claimed" and noted.data["vm_id"] is not None, noted

    wait_completed(sandbox, [job_a, job_b], 60)

    assert_one_vm_per_attempt(sandbox)
    assert sandbox.sim.job(job_b).runner_name == a_claim
