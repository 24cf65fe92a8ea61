"""Runners that do not do what they were launched for: taken by another job, surplus after a
cancellation, never booting, outliving their lifetime, ghosts and orphans; VMs that refuse to be
deleted, which must not stop scale-down's pass.

Invariants 2 and 3: every queued job gets a runner, and no VM or registration outlives its
purpose for more than a scale-down cycle after its grace period (its lifetime at most).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from e2e_support import (
    LABELS,
    POOL,
    QUIET,
    DeletionProtection,
    assert_vms_accounted,
    dead_letters,
    describe,
    github_runner_names,
    logged,
    queue_jobs,
    record,
    runner_records,
    running_vms,
    set_faults,
    wait_completed,
    wait_for,
)
from jitr_core.errors import PassIncomplete
from jitr_core.messages import JobMessage, LifecycleMessage, encode
from jitr_core.model import LaunchRequest, Record, Scope, idempotency_token
from jitr_core.services import ScaledownService
from jitr_core.startup import ScriptContext
from jitr_functions.local import Intervals
from jitr_functions.sandbox import SandboxFaults, SimulatedCrash, VMFaults

REPO = "octo-org/api"


def test_job_taken_by_another_jobs_runner(e2e_sandbox):
    """Jobs A and B want the same runner. A's queued webhook is lost, so only B's runner is
    launched, and GitHub gives it the older job, A. jitr notices from A's in_progress event and
    launches again for B; both complete with two VMs, none left over."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    set_faults(sandbox, drop_webhook=1.0)
    job_a = sandbox.sim.queue_job(REPO, LABELS, name="a")
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    job_b = sandbox.sim.queue_job(REPO, LABELS, name="b")

    wait_completed(sandbox, [job_a, job_b], 60)

    runner_b1 = f"jitr-linux-{job_b}-1"
    assert sandbox.sim.job(job_a).runner_name == runner_b1  # B's runner took A
    assert sandbox.sim.job(job_b).runner_name == f"jitr-linux-{job_b}-2"  # and B got a new one
    assert dict(sandbox.vms.launches) == {runner_b1: 1, f"jitr-linux-{job_b}-2": 1}
    assert record(sandbox, "runner", runner_b1).data["serving_job_id"] == job_a
    wait_for(
        lambda: record(sandbox, "job", job_a).state == "completed" == record(sandbox, "job", job_b).state,
        60,
        "both job records to complete",
    )
    assert record(sandbox, "job", job_b).data["attempt"] == 2
    assert assert_vms_accounted(sandbox, [job_a, job_b], exact=True, scaledown=True) == 0


def test_runners_of_a_burst_serve_each_others_jobs(e2e_sandbox):
    """Twelve jobs with the same labels in one repository: runners take whichever job is oldest.
    The counts still come out right, and any runner left without a job is retired."""
    sandbox = e2e_sandbox(pools=[POOL])
    jobs = queue_jobs(sandbox, 12, [REPO])
    wait_completed(sandbox, jobs, 60)
    taken = [j for j in jobs if sandbox.sim.job(j).runner_name != f"jitr-linux-{j}-1"]
    assert taken, "no runner took another job's place; the scenario did not happen"
    surplus = assert_vms_accounted(sandbox, jobs, timeout_s=60)
    assert surplus <= len(taken)


@pytest.mark.parametrize("handoff", ["broker", "metadata"])
def test_job_cancelled_while_queued_retires_its_runner(e2e_sandbox, handoff: str):
    pool = {**POOL, "handoff": handoff}
    sandbox = e2e_sandbox(pools=[pool], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(never_boots=1.0)))
    [job] = queue_jobs(sandbox, 1, [REPO])
    name = f"jitr-linux-{job}-1"
    wait_for(
        lambda: (r := record(sandbox, "runner", name)) is not None and r.state == "launched",
        60,
        "the runner to be launched",
    )
    wait_for(lambda: record(sandbox, "job", job).data.get("launched_runner") == name, 60, "the job to be linked")
    assert name in running_vms(sandbox).values()
    # registered at scaleup in a metadata pool; a broker pool's VM that never boots never asks
    assert (name in github_runner_names(sandbox)) == (handoff == "metadata")

    sandbox.sim.cancel_job(job)

    _assert_retired_as_surplus(sandbox, job, name)


@pytest.mark.parametrize("handoff", ["broker", "metadata"])
def test_job_cancelled_while_its_runner_launches_retires_that_runner(e2e_sandbox, handoff: str):
    """The cancellation reaches lifecycle after the VM is launched and recorded but before scaleup
    links the job to its runner: lifecycle finds no runner to retire, so scaleup, seeing the job
    cancelled when it links, retires it (before, the VM ran on until scale-down's surplus rule)."""
    pool = {**POOL, "handoff": handoff}
    sandbox = e2e_sandbox(pools=[pool], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(never_boots=1.0)))
    cancelled: list[int] = []

    def cancel_before_the_link(step: str) -> None:
        if step == "recorded" and not cancelled:
            [job] = [r.data["job_id"] for r in runner_records(sandbox)]
            cancelled.append(job)
            sandbox.sim.cancel_job(job)
            wait_for(lambda: record(sandbox, "job", job).state == "cancelled", 60, "lifecycle to see the cancellation")

    sandbox.app.scaleup.checkpoint = cancel_before_the_link
    [job] = queue_jobs(sandbox, 1, [REPO])
    name = f"jitr-linux-{job}-1"
    wait_for(lambda: cancelled, 60, "the launch to be recorded")

    assert record(sandbox, "job", job).data.get("launched_runner") is None
    _assert_retired_as_surplus(sandbox, job, name)


def test_job_cancelled_before_its_queued_message_is_handled_gets_no_runner(e2e_sandbox):
    """The two queues keep no order between them: the cancellation (``completed``, no runner) is
    handled before the job's ``queued`` message. Lifecycle records the job cancelled, so scaleup
    launches nothing for it (before, it launched a runner that idled to its maximum lifetime,
    and the stuck-job rule then launched the cancelled job again)."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    set_faults(sandbox, drop_webhook=1.0)  # the test hands each service its message, in that order
    job = sandbox.sim.queue_job(REPO, LABELS, name="cancelled")
    sandbox.sim.cancel_job(job)
    run_id = sandbox.sim.job(job).run_id
    fields = dict(
        job_id=job, run_id=run_id, repository=REPO, owner="octo-org", installation_id=None, labels=tuple(LABELS)
    )

    cancelled = LifecycleMessage(action="completed", conclusion="cancelled", received_at=time.time(), **fields)
    assert sandbox.app.lifecycle.handle(encode(cancelled).body) == "cancelled"
    queued = JobMessage(private=True, received_at=time.time(), **fields)

    assert sandbox.app.scaleup.handle(encode(queued).body) == "job-finished"
    assert record(sandbox, "job", job).state == "cancelled"
    assert not runner_records(sandbox) and not sandbox.vms.launches


def _assert_retired_as_surplus(sandbox, job: int, name: str) -> None:
    """The cancelled job's one runner is retired as surplus, its VM and registration gone."""
    wait_for(
        lambda: record(sandbox, "runner", name).state == "retired",
        60,
        "the surplus runner to be retired",
        detail=lambda: describe(sandbox, [job]),
    )
    assert record(sandbox, "runner", name).data["retired_reason"] == "job-cancelled-while-queued"
    assert record(sandbox, "job", job).state == "cancelled"
    wait_for(lambda: name not in running_vms(sandbox).values(), 60, "its VM to end")
    assert name not in github_runner_names(sandbox)
    assert sum(sandbox.vms.launches.values()) == 1


def test_vm_that_never_boots_is_replaced_after_the_boot_timeout(e2e_sandbox):
    faults = SandboxFaults(vms=VMFaults(never_boots=1.0))
    sandbox = e2e_sandbox(pools=[POOL], faults=faults, settings={"boot_timeout_s": 2})
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"
    wait_for(lambda: first in sandbox.vms.launches, 60, "the first launch")
    faults.vms.never_boots = 0.0  # the next VM boots

    wait_completed(sandbox, [job], 40)

    assert dict(sandbox.vms.launches) == {first: 1, second: 1}
    assert record(sandbox, "runner", first).state == "retired"
    assert record(sandbox, "runner", first).data["retired_reason"] == "never-came-online"
    assert first not in running_vms(sandbox).values() and first not in github_runner_names(sandbox)
    assert sandbox.sim.job(job).runner_name == second
    assert record(sandbox, "job", job).data["attempt"] == 2
    assert_vms_accounted(sandbox, [job])


@pytest.mark.parametrize("crash_after_launch", [False, True], ids=["recorded", "crash-before-recording"])
def test_vm_past_its_lifetime_is_terminated_even_while_busy(e2e_sandbox, crash_after_launch):
    """The lifetime is enforced on a busy runner too, also when the worker that launched its VM
    died before recording it (the runner took its job before the launch was written down)."""
    pool = {**POOL, "max_lifetime_s": 300}
    sandbox = e2e_sandbox(pools=[pool], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(job_seconds=(600.0, 600.0))))
    if crash_after_launch:
        crashes = []

        def crash_once(step: str) -> None:
            if step == "launched" and not crashes:
                crashes.append(step)
                raise SimulatedCrash("worker died after launching")

        sandbox.app.scaleup.checkpoint = crash_once
    [job] = queue_jobs(sandbox, 1, [REPO])
    name = f"jitr-linux-{job}-1"
    wait_for(
        lambda: (r := record(sandbox, "runner", name)) is not None and r.state == "busy", 60, "the runner to be busy"
    )

    # a busy runner within its lifetime is never touched by cleanup
    sandbox.app.scaledown.run()
    assert record(sandbox, "runner", name).state == "busy"
    assert name in running_vms(sandbox).values()

    later = ScaledownService(sandbox.app.backend, sandbox.app.github, clock=lambda: time.time() + 301)
    report = later.run()

    assert report.get("lifetime-exceeded") == 1, report
    wait_for(
        lambda: name not in running_vms(sandbox).values(),
        60,
        "the VM to be terminated",
        detail=lambda: describe(sandbox, [job]),
    )
    wait_for(lambda: sandbox.sim.job(job).status == "completed", 60, "GitHub to fail the job")
    assert sandbox.sim.job(job).conclusion == "failure"
    assert name not in github_runner_names(sandbox)
    # retired for its lifetime, or finished by the failure GitHub reported when its VM vanished
    wait_for(lambda: record(sandbox, "runner", name).state in ("retired", "finished"), 60, "the record to end")
    assert sum(sandbox.vms.launches.values()) == 1


def test_a_vm_that_cannot_be_deleted_does_not_stop_the_pass(e2e_sandbox):
    """Two runners past their lifetime and an orphan VM, the orphan and one runner's VM refusing
    deletion: the pass retires the other runner, logs and counts the two failures and ends in an
    error, and a later pass removes both once their VMs can be deleted."""
    protection = DeletionProtection()
    sandbox = e2e_sandbox(
        pools=[{**POOL, "handoff": "metadata", "max_lifetime_s": 300}],  # the orphan holds its own config
        intervals=QUIET,
        faults=SandboxFaults(vms=VMFaults(job_seconds=(600.0, 600.0))),
        extra_plugins=[("e2e-deletion-protection", protection)],
    )
    jobs = queue_jobs(sandbox, 2, [REPO])

    def busy() -> list[str]:  # by their records: a runner may take the other job, and then a swap names a third
        return sorted(r.key for r in runner_records(sandbox, ["busy"]) if r.data.get("vm_id") is not None)

    protected, other = wait_for(
        lambda: len(names := busy()) == 2 and names, 60, "two busy runners", detail=lambda: describe(sandbox, jobs)
    )
    orphan = "jitr-linux-8000000003-1"
    _mint_and_launch(sandbox, orphan, launch=True)
    orphan_vm = wait_for(
        lambda: next((vm for vm, name in running_vms(sandbox).items() if name == orphan), None), 60, "the orphan VM"
    )
    protection.vm_ids |= {record(sandbox, "runner", protected).data["vm_id"], orphan_vm}
    later = ScaledownService(sandbox.app.backend, sandbox.app.github, clock=lambda: time.time() + 301)

    with pytest.raises(PassIncomplete) as incomplete:  # the invocation fails, once the rest is done
        later.run()

    report = incomplete.value.report
    assert report.get("lifetime-exceeded") == 1 and report.get("errors") == 2, report
    wait_for(lambda: other not in running_vms(sandbox).values(), 60, "the other VM to be terminated")
    assert {protected, orphan} <= set(running_vms(sandbox).values())
    assert record(sandbox, "runner", protected).state == "busy"
    failures = [json.loads(line) for line in sandbox.log_text().splitlines() if "deletion protection" in line]
    assert sorted((f["level"], f["step"], f.get("runner_name") or f.get("vm_id")) for f in failures) == [
        ("ERROR", "orphan removal", orphan_vm),
        ("ERROR", "runner check", protected),
    ]

    protection.vm_ids.clear()
    report = later.run()
    assert report.get("lifetime-exceeded") == 1 and report.get("orphan-vms") == 1 and "errors" not in report, report
    wait_for(lambda: not {protected, orphan} & set(running_vms(sandbox).values()), 60, "both VMs to go once they can")


def test_serve_logs_an_incomplete_scaledown_pass_without_a_traceback(e2e_sandbox):
    """``jitr serve``'s scale-down loop, an orphan VM refusing deletion: each pass ends in one
    ERROR line with its report (the failed step's own line says why; a traceback would say
    nothing more), and a later pass removes the orphan once it can be deleted."""
    protection = DeletionProtection(all_vms=True)
    sandbox = e2e_sandbox(
        pools=[{**POOL, "handoff": "metadata"}],  # the orphan holds its own config
        intervals=Intervals(scaledown_s=0.2, rebalancer_s=3600.0, visibility_timeout_s=1),
        settings={"ghost_grace_s": 0},
        extra_plugins=[("e2e-deletion-protection", protection)],
    )
    orphan = "jitr-linux-8000000004-1"
    _mint_and_launch(sandbox, orphan, launch=True)

    incomplete = wait_for(lambda: logged(sandbox, "periodic run incomplete"), 60, "an incomplete pass")[0]

    assert incomplete["level"] == "ERROR" and "exception" not in incomplete, incomplete
    assert incomplete["report"].get("errors") == 1, incomplete
    assert [f["step"] for f in logged(sandbox, "step failed; the next pass tries it again")][:1] == ["orphan removal"]
    assert not logged(sandbox, "periodic run failed")
    protection.all_vms = False
    wait_for(lambda: orphan not in running_vms(sandbox).values(), 60, "the orphan to go once it can")


def _mint_and_launch(sandbox, name: str, launch: bool) -> None:
    """What a scale-up that lost its records would leave: a registration, and maybe a VM."""
    app = sandbox.app
    pool = app.settings.pool("linux")
    installation = app.github.installation_for("octo-org", "api")
    jit = app.github.generate_jit_config(Scope(installation, "octo-org", "api"), name, sorted(pool.labels), "Default")
    if not launch:
        return
    context = ScriptContext(name, pool, "simulated", jit.encoded, app.settings.runner_version, pool.max_lifetime_s)
    script = app.backend.render_startup_script(context)
    app.backend.launch_vm(
        LaunchRequest(
            runner_name=name,
            pool=pool.name,
            machine_type=pool.machine_types[0],
            placement=None,
            spot=True,
            image="",
            disk_gb=pool.disk_gb,
            startup_script=script,
            idempotency_token=idempotency_token(name, 0),
            max_lifetime_s=pool.max_lifetime_s,
        )
    )


def test_ghost_runner_and_orphan_vm_are_removed(e2e_sandbox):
    # the runners are registered and launched by hand, their configs in their scripts
    pool = {**POOL, "handoff": "metadata"}
    sandbox = e2e_sandbox(pools=[pool], intervals=QUIET, settings={"ghost_grace_s": 1})
    [done] = queue_jobs(sandbox, 1, [REPO])  # the repository has recent activity, and nothing in flight
    wait_completed(sandbox, [done], 60)
    wait_for(lambda: record(sandbox, "runner", f"jitr-linux-{done}-1").state == "finished", 60, "the runner")

    ghost, orphan = "jitr-linux-8000000001-1", "jitr-linux-8000000002-1"
    _mint_and_launch(sandbox, ghost, launch=False)
    _mint_and_launch(sandbox, orphan, launch=True)
    assert {ghost, orphan} <= github_runner_names(sandbox)
    wait_for(lambda: orphan in running_vms(sandbox).values(), 60, "the orphan VM to run")
    time.sleep(1.1)  # past the grace period

    reports = []

    def cleaned() -> bool:
        reports.append(sandbox.app.scaledown.run())
        return orphan not in running_vms(sandbox).values() and not {ghost, orphan} & github_runner_names(sandbox)

    wait_for(
        cleaned,
        60,
        "the ghost and the orphan to be removed",
        step_s=0.3,
        detail=lambda: f"{reports[-3:]}\n{github_runner_names(sandbox)}\n{running_vms(sandbox)}",
    )
    total = Counter()
    for report in reports:
        total.update(report)
    assert total["orphan-vms"] == 1, reports
    assert total["ghost-runners"] >= 1, reports
    assert len(reports) <= 3, f"took {len(reports)} scale-down passes: {reports}"
    assert [r.key for r in runner_records(sandbox)] == [f"jitr-linux-{done}-1"]


def test_a_registration_minted_by_a_worker_that_died_before_recording_it_goes_in_one_pass(e2e_sandbox):
    """The worker dies between minting the JIT config and writing the registration's id down; its
    message is not redelivered. The pass that ends the abandoned claim also removes the
    registration, found by the runner's name among GitHub's runners."""
    pool = {**POOL, "handoff": "metadata"}
    settings = {"claim_timeout_s": 1, "ghost_grace_s": 1, "embedded": {"max_receive_count": "1"}}
    sandbox = e2e_sandbox(pools=[pool], intervals=QUIET, settings=settings)

    def die_after_minting(step: str) -> None:
        if step == "minted":
            raise SimulatedCrash("worker died after step 'minted'")

    sandbox.app.scaleup.checkpoint = die_after_minting
    [job] = queue_jobs(sandbox, 1, [REPO])
    name = f"jitr-linux-{job}-1"
    wait_for(lambda: name in github_runner_names(sandbox), 60, "the registration to be minted")
    wait_for(lambda: dead_letters(sandbox, "jobs"), 60, "the message to be dead-lettered")
    claim = record(sandbox, "runner", name)
    assert claim is not None and claim.state == "claimed" and claim.data["github_runner_id"] is None
    sandbox.app.scaleup.checkpoint = lambda step: None

    later = ScaledownService(sandbox.app.backend, sandbox.app.github, clock=lambda: time.time() + 60)
    report = later.run()

    assert report["abandoned-claims"] == 1 and report["ghost-runners"] == 1, report
    assert name not in github_runner_names(sandbox)
    assert record(sandbox, "runner", name) is None


def test_a_claim_whose_vm_ended_before_its_launch_was_recorded_is_retired_and_the_job_relaunched(e2e_sandbox):
    """The worker dies between launching and recording the launch, and its message is not
    redelivered: nothing records that launch, and the broker pool's VM waits for it in vain.
    While that VM runs, scaledown leaves the claim alone (a worker under load may record it
    late); once the VM has given up and ended, the claim is retired and the job relaunched."""
    settings = {"claim_timeout_s": 1, "embedded": {"max_receive_count": "1"}}
    sandbox = e2e_sandbox(pools=[{**POOL, "handoff": "broker"}], intervals=QUIET, settings=settings)

    def die_after_launching(step: str) -> None:
        if step == "launched":
            raise SimulatedCrash("worker died after step 'launched'")

    sandbox.app.scaleup.checkpoint = die_after_launching
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"
    wait_for(lambda: dead_letters(sandbox, "jobs"), 60, "the message to be dead-lettered")
    sandbox.app.scaleup.checkpoint = lambda step: None
    claimed_at = record(sandbox, "runner", first).data["claimed_at"]
    wait_for(lambda: time.time() - claimed_at > 1, 60, "the claim to be older than claim_timeout_s")

    assert "abandoned-claims" not in sandbox.app.scaledown.run()  # its VM still waits at the broker
    noted = record(sandbox, "runner", first)
    assert noted.state == "claimed" and noted.data["vm_id"] is not None
    sandbox.app.backend.terminate_vm(noted.data["vm_id"])  # the VM gives up waiting and ends
    wait_for(lambda: first not in running_vms(sandbox).values(), 60, "the VM to end")
    report = sandbox.app.scaledown.run()
    wait_completed(sandbox, [job], 60)

    assert report["abandoned-claims"] == 1, report
    assert record(sandbox, "runner", first).data["retired_reason"] == "claim-abandoned"
    assert sandbox.sim.job(job).runner_name == second
    assert dict(sandbox.vms.launches) == {first: 1, second: 1}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"job_id": 8000000005}, "has no owner"),
        ({"owner": "octo-org", "repo": "api", "installation_id": 1001, "job_id": "x"}, "has no job id (found 'x')"),
    ],
    ids=["no-owner", "bad-job-id"],
)
def test_a_malformed_runner_record_does_not_stop_the_pass(e2e_sandbox, data, reason):
    """A runner record lacking a field jitr writes (its owner, its job: a hand edit, a store
    restored from elsewhere) fails its own step, named and explained, every pass; the rest of the
    pass (an orphan VM here) goes on, and the rebalancer is not stopped by it either."""
    sandbox = e2e_sandbox(pools=[{**POOL, "handoff": "metadata"}], intervals=QUIET)  # the orphan holds its config
    broken = "jitr-linux-8000000005-1"
    now = time.time()
    record_data = {**data, "vm_id": "vm-none", "launched_at": now}
    assert sandbox.app.backend.create(
        Record("runner", broken, "launched", "linux", created_at=now, updated_at=now, data=record_data)
    )
    orphan = "jitr-linux-8000000006-1"
    _mint_and_launch(sandbox, orphan, launch=True)
    wait_for(lambda: orphan in running_vms(sandbox).values(), 60, "the orphan VM")
    later = ScaledownService(sandbox.app.backend, sandbox.app.github, clock=lambda: time.time() + 301)

    with pytest.raises(PassIncomplete) as incomplete:
        later.run()

    report = incomplete.value.report
    assert report.get("orphan-vms") == 1 and report.get("errors") == 1, report
    [failed] = [f for f in logged(sandbox, "step failed; the next pass tries it again") if f["step"] == "runner check"]
    assert failed["runner_name"] == broken and failed["reason"].endswith(reason), failed
    wait_for(lambda: orphan not in running_vms(sandbox).values(), 60, "the orphan to be terminated")
    assert record(sandbox, "runner", broken).state == "launched"  # left for an operator: nothing says what it was
    sandbox.app.rebalancer.run()
