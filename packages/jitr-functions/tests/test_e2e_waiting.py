"""A job waiting for an environment's approval gets no runner until it is approved, then exactly one."""

from __future__ import annotations

from e2e_support import LABELS, POOL, QUIET, assert_one_vm_per_attempt, record, wait_completed, wait_for


def test_a_waiting_job_launches_nothing_until_approved(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], installations={"octo-org": ["api"]}, intervals=QUIET)
    job_id = sandbox.sim.queue_job("octo-org/api", LABELS, name="deploy", waiting=True)
    wait_for(
        lambda: any(d.job_id == job_id and d.action == "waiting" and d.ok for d in sandbox.sim.deliveries()),
        60,
        "the waiting webhook answered",
    )
    sandbox.app.rebalancer.run()  # nor does the repair pass take a waiting job for a lost one

    assert record(sandbox, "job", job_id) is None
    assert not sandbox.vms.launches

    sandbox.sim.approve_job(job_id)
    wait_completed(sandbox, [job_id], 60)
    assert sandbox.sim.job(job_id).conclusion == "success"
    assert_one_vm_per_attempt(sandbox)
    assert len(sandbox.vms.launches) == 1
