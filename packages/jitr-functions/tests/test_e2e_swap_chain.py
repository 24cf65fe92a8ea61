"""Runner swaps whose events race or arrive out of order must not cost a launch.

GitHub gives a job to any idle runner with matching labels. When A's runner takes B while B's
runner takes C, and both ``in_progress`` are handled at the same moment, A's swap can find B's
runner already busy with C (or done with it) before B's own swap ran, and B's swap then finds B
no longer queued. The runner launched for C is the one left idle: A must be handed it, not
launched for again (a surplus launch, and an idle runner retired later). And when a runner's
``completed`` is handled before its ``in_progress``, the swap happens there.
"""

from __future__ import annotations

import pytest
from e2e_support import LABELS, POOL, QUIET, describe, queue_jobs, record, runner_records, wait_for
from jitr_core.messages import LifecycleMessage, encode
from jitr_core.model import RunnerState
from jitr_core.services.records import RUNNER, Store
from jitr_functions.sandbox import RECORDING, Sandbox


def launched(e2e_sandbox, count: int) -> tuple[Sandbox, dict[int, str]]:
    """A deployment whose recorded VMs never boot, with ``count`` jobs launched for: its runners by job."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, vm_provider=RECORDING, boot_s=None)
    runners = {job: f"jitr-linux-{job}-1" for job in queue_jobs(sandbox, count)}
    wait_for(
        lambda: all(getattr(record(sandbox, "runner", name), "state", None) == "launched" for name in runners.values()),
        60,
        f"the {count} runners launched",
        detail=lambda: describe(sandbox, list(runners)),
    )
    return sandbox, runners


def took(sandbox: Sandbox, job_id: int, runner_name: str, action: str, conclusion: str | None = None) -> str:
    """Handle the lifecycle message of ``runner_name`` taking (``in_progress``) or ending the job."""
    job = sandbox.sim.job(job_id)
    message = LifecycleMessage(
        action=action,
        job_id=job_id,
        run_id=job.run_id,
        repository=job.repository,
        owner=job.repository.split("/")[0],
        installation_id=None,
        labels=tuple(LABELS),
        runner_name=runner_name,
        conclusion=conclusion,
    )
    return sandbox.app.lifecycle.handle(encode(message).body)


@pytest.mark.parametrize("b_runner", [RunnerState.BUSY, RunnerState.FINISHED])
def test_a_swap_that_finds_the_taken_jobs_runner_gone_on_hands_on_the_runner_left_idle(e2e_sandbox, b_runner):
    sandbox, runners = launched(e2e_sandbox, 3)
    job_a, job_b, job_c = runners
    # B's runner took C (and maybe finished it), and that in_progress got as far as marking the
    # runner when ...
    Store(sandbox.app.backend).update(RUNNER, runners[job_b], lambda _: {"state": b_runner, "serving_job_id": job_c})
    # ... A's runner's taking B is handled
    assert took(sandbox, job_b, runners[job_a], "in_progress") == "took-another-jobs-runner"

    a = record(sandbox, "job", job_a)
    assert a.state == "queued" and a.data["launched_runner"] == runners[job_c], describe(sandbox, list(runners))
    assert record(sandbox, "runner", runners[job_c]).data["job_id"] == job_a
    assert [s["event"] for s in a.data["timeline"]].count("requeued") == 0
    assert len(sandbox.vms.launches) == 3  # no launch for A again


def test_a_runner_whose_completed_comes_before_its_in_progress_still_hands_its_job_the_spare(e2e_sandbox):
    """A's runner took B and finished it, but the ``completed`` is handled first (the
    ``in_progress`` late or lost): A is handed B's runner there, not left to the stuck-job repair."""
    sandbox, runners = launched(e2e_sandbox, 2)
    job_a, job_b = runners
    assert took(sandbox, job_b, runners[job_a], "completed", conclusion="success") == "finished"

    a = record(sandbox, "job", job_a)
    assert a.state == "queued" and a.data["launched_runner"] == runners[job_b], describe(sandbox, list(runners))
    assert record(sandbox, "runner", runners[job_b]).data["job_id"] == job_a

    # the late in_progress changes nothing: no second swap, no launch for A
    assert took(sandbox, job_b, runners[job_a], "in_progress") == "busy"
    a = record(sandbox, "job", job_a)
    assert a.data["launched_runner"] == runners[job_b]
    assert [s["event"] for s in a.data["timeline"]].count("requeued") == 0
    assert len(sandbox.vms.launches) == 2


def test_a_claim_handed_to_another_job_while_launching_still_gets_its_vm_its_config(e2e_sandbox):
    """A's runner takes B while B's scaleup holds its claim and has launched nothing: A adopts the
    claim (the swap rebinds it to A). Scaleup's write of the broker handoff comes after that
    rebind and must not be lost to it, or B's VM is refused its config and A waits for ever."""
    sandbox, runners = launched(e2e_sandbox, 1)
    [job_a] = runners
    swaps: list[tuple[str, str]] = []

    def take_b_while_claimed(at: str) -> None:
        if at != "claimed" or swaps:
            return
        [claim] = runner_records(sandbox, ["claimed"])
        swaps.append((claim.key, took(sandbox, claim.data["job_id"], runners[job_a], "in_progress")))

    sandbox.app.scaleup.checkpoint = take_b_while_claimed
    queue_jobs(sandbox, 1)
    wait_for(lambda: swaps, 60, "B's claim")
    [(spare, outcome)] = swaps
    assert outcome == "took-another-jobs-runner"
    wait_for(lambda: record(sandbox, "runner", spare).state == "launched", 60, "B's runner launched")

    runner = record(sandbox, "runner", spare)
    assert runner.data["job_id"] == job_a and runner.data["handoff"] == "waiting", runner.data
    assert record(sandbox, "job", job_a).data["launched_runner"] == spare
    sandbox.vms.boot()  # A's VM is refused (its runner is busy in the records); B's gets its config
    wait_for(
        lambda: record(sandbox, "runner", spare).data.get("handoff") == "handed",
        60,
        "B's VM to be handed its config",
        detail=sandbox.log_text,
    )


@pytest.mark.parametrize("b_runner_left", [True, False], ids=["adopts-the-spare", "launches-again"])
def test_a_duplicated_in_progress_of_a_swap_swaps_once(e2e_sandbox, b_runner_left):
    """A's runner took B; the in_progress saying so comes twice (an at-least-once queue, a
    redelivered webhook). The first hands A B's idle runner, or, with none left, launches A
    again; the second finds the swap done and changes nothing: no third runner for A."""
    sandbox, runners = launched(e2e_sandbox, 2)
    job_a, job_b = runners
    if not b_runner_left:  # B's runner gone before booting (a reclaimed spot VM): nothing to hand A
        Store(sandbox.app.backend).update(RUNNER, runners[job_b], lambda _: {"state": RunnerState.RETIRED})
    assert took(sandbox, job_b, runners[job_a], "in_progress") == "took-another-jobs-runner"
    after_first = record(sandbox, "job", job_a).data
    assert after_first["attempt"] == (1 if b_runner_left else 2), describe(sandbox, list(runners))
    if b_runner_left:  # (launched again, the new attempt's runner may be linked already)
        assert after_first["launched_runner"] == runners[job_b]

    took(sandbox, job_b, runners[job_a], "in_progress")

    after_second = record(sandbox, "job", job_a).data
    assert after_second["attempt"] == after_first["attempt"], describe(sandbox, list(runners))
    if b_runner_left:
        assert after_second["launched_runner"] == runners[job_b]
    assert [e["event"] for e in after_second["timeline"]].count("requeued") == (0 if b_runner_left else 1)
