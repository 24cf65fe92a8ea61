"""Spot reclaims at every stage, on the embedded backend with the GitHub simulator over HTTP.

The sandbox's reclaim fault stops a runner's VM (GitHub fails the job it was running) and puts
the interruption message on the lifecycle queue, before or after the VM dies, any number of
times. Whatever the order and the duplicates: a job is re-run exactly once when its pool opts
in and never when it does not, the retry launches on-demand, no (job, attempt) gets two VMs
and no job is lost.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_support import (
    LABELS,
    QUIET,
    assert_one_vm_per_attempt,
    dead_letters,
    describe,
    post,
    queue_jobs,
    record,
    wait_completed,
    wait_for,
    webhook_headers,
)
from jitr_core.model import QueueMessage
from jitr_functions.sandbox import SandboxFaults, VMFaults

LONG_JOB = (600.0, 600.0)  # held until reclaimed
SHORT_JOB = (0.05, 0.1)


def spot_pool(rerun: bool) -> dict[str, Any]:
    return {
        "name": "linux",
        "labels": LABELS,
        "machine_types": ["m7.large"],
        "placements": ["zone-a"],
        "max_runners": 10,
        "spot": True,
        "on_demand_fallback": True,
        "rerun_on_interruption": rerun,
    }


def start(e2e_sandbox: Any, rerun: bool, **vm_faults: Any) -> Any:
    faults = SandboxFaults(vms=VMFaults(job_seconds=LONG_JOB, **vm_faults))
    return e2e_sandbox(pools=[spot_pool(rerun)], installations={"octo-org": ["api"]}, intervals=QUIET, faults=faults)


def attempts_of(sandbox: Any, job_id: int) -> list[Any]:
    """Every job of the run ``job_id`` belongs to, oldest first (a re-run adds one per attempt)."""
    run_id = sandbox.sim.job(job_id).run_id
    return sorted((j for j in sandbox.sim.jobs() if j.run_id == run_id), key=lambda j: j.id)


def outcomes(sandbox: Any, outcome_prefix: str) -> int:
    """Lifecycle log lines whose outcome starts so: the work the lifecycle function finished."""
    count = 0
    for line in sandbox.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "lifecycle" and str(entry.get("outcome", "")).startswith(outcome_prefix):
            count += 1
    return count


def busy_runner(sandbox: Any, job_id: int) -> str:
    """The runner running the job, once GitHub and jitr both say so."""
    wait_for(lambda: sandbox.sim.job(job_id).status == "in_progress", 60, "the job to start")
    name = sandbox.sim.job(job_id).runner_name
    wait_for(lambda: (r := record(sandbox, "runner", name)) is not None and r.state == "busy", 60, "runner busy")
    return str(name)


def redeliver_completed(sandbox: Any, job_id: int) -> None:
    """The ``completed`` webhook again, under a new delivery id (GitHub does send duplicates)."""

    def completed() -> list[Any]:
        return [d for d in sandbox.sim.deliveries() if d.job_id == job_id and d.action == "completed" and d.ok]

    [delivery] = wait_for(completed, 60, "the completed webhook delivered")[:1]
    headers = webhook_headers(sandbox.webhook_secret, delivery.body)
    status, _ = post(sandbox.runtime.url + "/webhook", delivery.body, headers)
    assert status in (200, 202), status


def timeline_events(sandbox: Any, job_id: int) -> list[dict[str, Any]]:
    job = record(sandbox, "job", job_id)
    return list(job.data.get("timeline", [])) if job is not None else []


@pytest.mark.parametrize("notice_first", [True, False], ids=["notice-then-reclaim", "reclaim-then-late-notice"])
def test_a_job_reclaimed_while_it_runs_is_rerun_once_on_demand(e2e_sandbox, notice_first):
    sandbox = start(e2e_sandbox, rerun=True)
    [job_id] = queue_jobs(sandbox, 1)
    runner = busy_runner(sandbox, job_id)
    assert record(sandbox, "runner", runner).data["spot"] is True
    sandbox.vms.faults.job_seconds = SHORT_JOB  # the retry runs to its end

    sandbox.reclaim(runner, notices=2, notice_first=notice_first)
    wait_for(lambda: sandbox.sim.job(job_id).conclusion == "failure", 60, "GitHub to fail the reclaimed job")
    redeliver_completed(sandbox, job_id)
    wait_for(lambda: len(attempts_of(sandbox, job_id)) == 2, 60, "the re-run", detail=lambda: describe(sandbox))
    retry = attempts_of(sandbox, job_id)[1]
    assert retry.run_attempt == 2
    wait_completed(sandbox, [retry.id], 60)
    assert sandbox.sim.job(retry.id).conclusion == "success"

    # late and duplicated notices after all that re-run nothing
    sandbox.notify_interruption(runner, copies=2)
    redeliver_completed(sandbox, job_id)
    wait_for(lambda: outcomes(sandbox, "rerun-already-requested") >= 2, 60, "late notices handled")
    assert len(attempts_of(sandbox, job_id)) == 2
    assert outcomes(sandbox, "rerun") - outcomes(sandbox, "rerun-already") == 1

    retry_runner = record(sandbox, "runner", sandbox.sim.job(retry.id).runner_name)
    assert retry_runner.data["spot"] is False, "the retry must launch on-demand"
    events = [e["event"] for e in timeline_events(sandbox, job_id)]
    assert "interrupted" in events and "rerun" in events
    assert_one_vm_per_attempt(sandbox)


def test_a_pool_that_does_not_opt_in_never_reruns(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=False)
    [job_id] = queue_jobs(sandbox, 1)
    runner = busy_runner(sandbox, job_id)

    sandbox.reclaim(runner, notices=2)
    wait_for(lambda: sandbox.sim.job(job_id).conclusion == "failure", 60, "GitHub to fail the reclaimed job")
    redeliver_completed(sandbox, job_id)
    sandbox.notify_interruption(runner)
    wait_for(lambda: outcomes(sandbox, "no-rerun-not-opted-in") >= 2, 60, "the notices and completions handled")

    assert len(attempts_of(sandbox, job_id)) == 1
    assert any(e["event"] == "interrupted" for e in timeline_events(sandbox, job_id))
    assert record(sandbox, "job", job_id).data.get("rerun") is None


def test_a_runner_reclaimed_before_it_came_online_is_replaced_on_demand(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=True, never_boots=1.0)
    [job_id] = queue_jobs(sandbox, 1)
    wait_for(lambda: len(sandbox.vms.launches) == 1, 60, "the first VM")
    [first] = list(sandbox.vms.launches)
    wait_for(lambda: record(sandbox, "runner", first).state == "launched", 60, "the launch recorded")
    sandbox.vms.faults.never_boots = 0.0
    sandbox.vms.faults.job_seconds = SHORT_JOB

    sandbox.reclaim(first, notices=3)
    wait_completed(sandbox, [job_id], 60)

    assert sandbox.sim.job(job_id).conclusion == "success"
    assert len(attempts_of(sandbox, job_id)) == 1, "GitHub never failed it: nothing to re-run"
    assert record(sandbox, "runner", first).state == "retired"
    serving = record(sandbox, "runner", sandbox.sim.job(job_id).runner_name)
    assert serving.key != first and serving.data["spot"] is False
    assert_one_vm_per_attempt(sandbox)
    assert len(sandbox.vms.launches) == 2, describe(sandbox, [job_id])


def test_a_reclaim_after_the_job_succeeded_changes_nothing(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=True)
    sandbox.vms.faults.job_seconds = SHORT_JOB
    [job_id] = queue_jobs(sandbox, 1)
    wait_completed(sandbox, [job_id], 60)
    runner = sandbox.sim.job(job_id).runner_name
    wait_for(lambda: record(sandbox, "runner", runner).state == "finished", 60, "the runner finished")

    sandbox.reclaim(runner, notices=2, notice_first=False)
    wait_for(lambda: outcomes(sandbox, "no-rerun-not-failed") >= 2, 60, "the notices handled")

    assert sandbox.sim.job(job_id).conclusion == "success"
    assert len(attempts_of(sandbox, job_id)) == 1
    assert_one_vm_per_attempt(sandbox)


def test_a_rerun_github_refuses_is_recorded_with_its_reason_and_not_retried(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=True)
    sandbox.sim.set_actions_write(False)
    [job_id] = queue_jobs(sandbox, 1)
    runner = busy_runner(sandbox, job_id)

    sandbox.reclaim(runner)
    wait_for(lambda: sandbox.sim.job(job_id).conclusion == "failure", 60, "GitHub to fail the reclaimed job")
    wait_for(lambda: record(sandbox, "job", job_id).data.get("rerun") == "failed", 60, "the refusal recorded")
    redeliver_completed(sandbox, job_id)
    wait_for(lambda: outcomes(sandbox, "rerun-already-requested") >= 1, 60, "the duplicate handled")

    job = record(sandbox, "job", job_id)
    assert "actions: write" in job.data["rerun_reason"]
    assert any(e.get("outcome") == "failed" and "actions: write" in e.get("reason", "") for e in job.data["timeline"])
    assert len(attempts_of(sandbox, job_id)) == 1


def test_a_transient_github_error_on_the_rerun_is_retried(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=True)
    sandbox.sim.fail_next(1, 502, path_contains="/rerun")
    [job_id] = queue_jobs(sandbox, 1)
    runner = busy_runner(sandbox, job_id)
    sandbox.vms.faults.job_seconds = SHORT_JOB

    sandbox.reclaim(runner)
    wait_for(lambda: len(attempts_of(sandbox, job_id)) == 2, 60, "the re-run", detail=lambda: describe(sandbox))
    wait_completed(sandbox, [attempts_of(sandbox, job_id)[1].id], 60)
    assert record(sandbox, "job", job_id).data["rerun"] == "done"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"v": 1, "type": "interruption", "kind": "interruption", "source": "x", "notice_at": 1}',
        b'{"v": 1, "type": "interruption", "kind": "boom", "source": "x", "notice_at": 1, "runner_name": "a"}',
        b'{"v": 1, "type": "interruption", "kind": "interruption", "source": "x", "notice_at": 1, '
        b'"runner_name": "../../etc/passwd"}',
        b'{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}',
        b'{"source": "evil.corp", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}}',
        b'{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", '
        b'"detail": {"instance-id": "i-1; rm -rf /"}, "time": "2026-01-01T00:00:00Z"}',
        b'{"logName": "projects/p/logs/x", "protoPayload": {"methodName": "v1.compute.instances.delete"}}',
    ],
    ids=["not-json", "no-vm", "bad-kind", "bad-name", "foreign-type", "foreign-source", "bad-id", "foreign-log"],
)
def test_hostile_interruption_messages_are_dead_lettered_with_a_reason(e2e_sandbox, body):
    sandbox = start(e2e_sandbox, rerun=True)
    sandbox.vms.faults.job_seconds = SHORT_JOB
    sandbox.app.backend.enqueue("lifecycle", QueueMessage(body=body.decode()))
    wait_for(lambda: dead_letters(sandbox, "lifecycle"), 60, "the message dead-lettered")
    [(_, reason)] = dead_letters(sandbox, "lifecycle")
    assert reason
    [job_id] = queue_jobs(sandbox, 1)  # the lifecycle function still works
    wait_completed(sandbox, [job_id], 60)


def test_a_notice_for_a_vm_jitr_does_not_know_is_ignored(e2e_sandbox):
    sandbox = start(e2e_sandbox, rerun=True)
    sandbox.notify_interruption("jitr-linux-1-1", vm_id="sim-999999")
    wait_for(lambda: outcomes(sandbox, "not-our-vm") >= 1, 60, "the notice handled")
    assert not dead_letters(sandbox, "lifecycle")
