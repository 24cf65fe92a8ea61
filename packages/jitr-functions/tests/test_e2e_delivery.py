"""Webhook deliveries as GitHub really makes them: duplicated, lost, out of order.

Invariant 1 (at most one VM per job attempt) under duplicate deliveries, invariant 2 (every job
gets a runner) under lost ones, and forward-only records under reordering.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest
from e2e_support import (
    POOL,
    QUIET,
    JobsRefused,
    assert_vms_accounted,
    describe,
    launches_per_job,
    logged,
    post,
    queue_jobs,
    record,
    set_faults,
    wait_completed,
    wait_for,
)
from jitr_core.errors import PassIncomplete
from jitr_core.model import RunnerState
from jitr_core.services.records import RUNNER, Store
from jitr_functions.sandbox import SandboxFaults, VMFaults
from jitr_github.simulator import Faults


def _answers_by_guid(sandbox, event_action: str) -> dict[str, list[int]]:
    answers: dict[str, list[int]] = defaultdict(list)
    for delivery in sandbox.sim.deliveries():
        if delivery.action == event_action:
            answers[delivery.guid].append(delivery.status_code)
    return answers


ONE_REPO_EACH = {"octo-org": [f"svc-{i}" for i in range(6)], "mona": ["dotfiles", "blog"]}


def test_duplicated_webhooks_launch_one_vm_per_job(e2e_sandbox):
    """Every delivery arrives twice. One job per repository, so no runner can take another's job
    and the count is exact: one VM per job."""
    sandbox = e2e_sandbox(
        pools=[POOL], installations=ONE_REPO_EACH, faults=SandboxFaults(github=Faults(seed=11, duplicate_webhook=1.0))
    )
    jobs = queue_jobs(sandbox, 8)

    wait_completed(sandbox, jobs)
    assert sandbox.sim.drain_webhooks(10)

    assert launches_per_job(sandbox) == Counter({job: 1 for job in jobs}), describe(sandbox, jobs)
    assert_vms_accounted(sandbox, jobs, exact=True)
    # every event really arrived twice and both copies were queued: no delivery records are kept,
    # the claim on (job, attempt) and forward-only records make the second copy harmless
    for action in ("queued", "in_progress", "completed"):
        answers = _answers_by_guid(sandbox, action)
        assert len(answers) == len(jobs)
        for codes in answers.values():
            assert codes == [202, 202], f"{action}: {codes}"
    wait_for(lambda: all(record(sandbox, "job", j).state == "completed" for j in jobs), 60, "job records completed")
    assert all(record(sandbox, "job", j).data["attempt"] == 1 for j in jobs)


def test_same_delivery_posted_twice_by_hand_launches_once(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    set_faults(sandbox, drop_webhook=1.0)  # GitHub records the delivery but never sends it
    [job] = queue_jobs(sandbox, 1)
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    [lost] = [d for d in sandbox.sim.deliveries() if d.job_id == job and d.action == "queued"]
    assert not lost.ok

    url = sandbox.runtime.url + "/webhook"
    answers: list[tuple[int, dict]] = []
    barrier = threading.Barrier(2)

    def send() -> None:
        barrier.wait()
        answers.append(post(url, lost.body, dict(lost.headers)))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers.append(post(url, lost.body, dict(lost.headers)))  # and once more, later

    assert answers == [(202, {"queued": "jobs"})] * 3
    wait_completed(sandbox, [job], 60)
    wait_for(lambda: sandbox.runtime.processed["jobs"] >= 3, 60, "every copy to be handled")
    assert launches_per_job(sandbox) == Counter({job: 1})


def test_lost_webhooks_are_recovered_from_githubs_queue(e2e_sandbox):
    """Queued webhooks of a busy repository are lost and redelivery is broken: the rebalancer's
    comparison of GitHub's queued jobs with the runners in flight finds them."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    repo = "octo-org/api"
    seen = queue_jobs(sandbox, 2, [repo])
    wait_completed(sandbox, seen, 60)  # the repository is now known to be active
    assert_vms_accounted(sandbox, seen, scaledown=True)  # and no idle runner is left to take a lost job

    sandbox.sim.fail_next(10_000, 404, path_contains="/app/hook/deliveries")  # no redelivery either
    set_faults(sandbox, drop_webhook=1.0)
    lost = queue_jobs(sandbox, 5, [repo])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    assert {d.job_id for d in sandbox.sim.deliveries() if d.action == "queued" and not d.ok} == set(lost)
    assert all(record(sandbox, "job", j) is None for j in lost)  # jitr has never heard of them

    report = sandbox.app.rebalancer.run()

    assert report.get("enqueued") == len(lost), report
    assert report.get("redelivered", 0) == 0
    wait_completed(sandbox, lost, 60)
    assert_vms_accounted(sandbox, seen + lost, scaledown=True)
    # a second pass finds nothing missing
    assert sandbox.app.rebalancer.run().get("enqueued", 0) == 0


def test_a_lost_job_the_queue_refuses_does_not_stop_the_rebalancer(e2e_sandbox):
    """Three queued webhooks are lost and the jobs queue refuses the newest job's message: the
    pass enqueues the other two, still looks for failed deliveries, logs the refused job and ends
    in an error; the next pass enqueues it once the queue takes it."""
    refused = JobsRefused()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-jobs-refused", refused)])
    repo = "octo-org/api"
    seen = queue_jobs(sandbox, 1, [repo])
    wait_completed(sandbox, seen, 60)  # the repository is now known to be active
    assert_vms_accounted(sandbox, seen, scaledown=True)
    set_faults(sandbox, drop_webhook=1.0)
    lost = queue_jobs(sandbox, 3, [repo])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    refused.job_ids.add(max(lost))
    sandbox.sim.reset_call_counts()

    with pytest.raises(PassIncomplete) as incomplete:
        sandbox.app.rebalancer.run()

    report = incomplete.value.report
    assert (report.get("enqueued"), report.get("errors")) == (2, 1), report
    assert "GET /app/hook/deliveries" in sandbox.sim.call_counts()  # the pass went on to its last step
    failed = logged(sandbox, "step failed; the next pass tries it again")
    assert [(f["level"], f["step"], f["job_id"]) for f in failed] == [("ERROR", "lost job enqueue", max(lost))]
    wait_completed(sandbox, sorted(lost)[:2], 60)
    assert record(sandbox, "job", max(lost)) is None

    refused.job_ids.clear()
    assert sandbox.app.rebalancer.run().get("enqueued") == 1
    wait_completed(sandbox, lost, 60)
    assert_vms_accounted(sandbox, seen + lost, scaledown=True)


def test_an_idle_runner_of_another_owner_does_not_hide_a_lost_job(e2e_sandbox):
    """An idle runner serves only the jobs of its registration scope: one left idle in another
    owner's organisation (a surplus from a swap) must not count against a lost job's gap."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, installations={"octo-org": ["api"], "mona": ["web"]})
    seen = queue_jobs(sandbox, 1, ["mona/web"])
    wait_completed(sandbox, seen, 60)  # mona/web is now known to be active
    assert_vms_accounted(sandbox, seen, scaledown=True)
    idle = {"job_id": 1, "attempt": 1, "owner": "octo-org", "repo": "api", "repository": "octo-org/api"}
    idle |= {"installation_id": 1, "vm_id": "vm-idle", "github_runner_id": None, "claimed_at": time.time()}
    assert Store(sandbox.app.backend).create(RUNNER, "jitr-linux-1-1", RunnerState.LAUNCHED, pool="linux", data=idle)

    sandbox.sim.fail_next(10_000, 404, path_contains="/app/hook/deliveries")  # no redelivery either
    set_faults(sandbox, drop_webhook=1.0)
    lost = queue_jobs(sandbox, 1, ["mona/web"])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)

    report = sandbox.app.rebalancer.run()

    assert report.get("enqueued") == 1, report
    wait_completed(sandbox, lost, 60)


def test_lost_webhooks_of_a_quiet_repository_are_redelivered(e2e_sandbox):
    """A repository jitr has never seen active is not polled; the failed deliveries are redelivered."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    set_faults(sandbox, drop_webhook=1.0)
    lost = queue_jobs(sandbox, 3, ["mona/dotfiles"])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)

    report = sandbox.app.rebalancer.run()

    assert report.get("redelivered") == len(lost), report
    wait_completed(sandbox, lost, 60)
    redelivered = {d.job_id for d in sandbox.sim.deliveries() if d.redelivery and d.action == "queued" and d.ok}
    assert redelivered == set(lost)
    assert_vms_accounted(sandbox, lost, scaledown=True)


def test_failed_deliveries_are_looked_for_at_most_every_redelivery_interval(e2e_sandbox):
    """Each look pages through GitHub's delivery log, so passes closer together than
    ``redelivery_interval_s`` leave it alone; the first pass after the interval redelivers
    what failed meanwhile."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, settings={"redelivery_interval_s": 3})
    set_faults(sandbox, drop_webhook=1.0)
    first = queue_jobs(sandbox, 1, ["mona/dotfiles"])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    assert sandbox.app.rebalancer.run().get("redelivered") == 1
    set_faults(sandbox, drop_webhook=1.0)
    second = queue_jobs(sandbox, 1, ["mona/dotfiles"])
    assert sandbox.sim.drain_webhooks(10)
    set_faults(sandbox)
    sandbox.sim.reset_call_counts()

    assert sandbox.app.rebalancer.run().get("redelivered", 0) == 0
    assert "GET /app/hook/deliveries" not in sandbox.sim.call_counts()
    wait_for(lambda: sandbox.app.rebalancer.run().get("redelivered") == 1, 60, "the next look redelivering")

    wait_completed(sandbox, first + second, 60)
    assert sandbox.sim.drain_webhooks(10)
    redelivered = [d.job_id for d in sandbox.sim.deliveries() if d.redelivery and d.action == "queued" and d.ok]
    assert sorted(redelivered) == sorted(first + second)


def test_lost_webhooks_with_periodic_functions_running(e2e_sandbox):
    """Without a hand on the controls: a fifth of all deliveries lost, every job still completes."""
    sandbox = e2e_sandbox(pools=[POOL], faults=SandboxFaults(github=Faults(seed=5, drop_webhook=0.2)))
    jobs = queue_jobs(sandbox, 12)
    wait_completed(sandbox, jobs, 60)
    assert any(not d.ok for d in sandbox.sim.deliveries()), "the seed lost no delivery"
    assert_vms_accounted(sandbox, jobs)


def test_reordered_webhooks_leave_records_completed(e2e_sandbox):
    """Half of all deliveries are held back 0.6 s while jobs take at most 0.1 s: a held
    in_progress is overtaken by its completed (with 24 jobs, all but certainly at least once).

    A VM ends a moment after its job; with the sandbox's 2 s ghost grace, a held ``completed``
    that a busy machine delays past it finds its runner retired as gone (its VM is), not
    finished. The grace here is 10 s: this test is about the order of deliveries, not ghosts."""
    faults = SandboxFaults(
        github=Faults(seed=3, reorder=0.5, reorder_hold_s=0.6), vms=VMFaults(job_seconds=(0.02, 0.1))
    )
    sandbox = e2e_sandbox(pools=[POOL], faults=faults, settings={"ghost_grace_s": 10})
    jobs = queue_jobs(sandbox, 24)
    wait_completed(sandbox, jobs, 60)
    assert sandbox.sim.drain_webhooks(10)

    overtaken = set()
    for job in jobs:
        order = [d.action for d in reversed(sandbox.sim.deliveries()) if d.job_id == job and d.ok]
        if "in_progress" in order and order.index("completed") < order.index("in_progress"):
            overtaken.add(job)
    assert overtaken, "the seed reordered no completed/in_progress pair"

    wait_for(
        lambda: all(record(sandbox, "job", j).state == "completed" for j in jobs),
        60,
        "job records to complete",
        detail=lambda: describe(sandbox, jobs),
    )
    assert_vms_accounted(sandbox, jobs)


def test_completed_before_in_progress_by_hand(e2e_sandbox):
    """Every delivery is recorded but not sent; the test delivers them itself, in the wrong order."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    set_faults(sandbox, drop_webhook=1.0)
    [job] = queue_jobs(sandbox, 1)
    url = sandbox.runtime.url + "/webhook"

    def recorded(action: str):
        found = [d for d in sandbox.sim.deliveries() if d.job_id == job and d.action == action]
        return found[0] if found else None

    queued = wait_for(lambda: recorded("queued"), 60, "the queued delivery")
    assert post(url, queued.body, dict(queued.headers))[0] == 202
    wait_for(lambda: sandbox.sim.job(job).status == "completed", 60, "the job to run")
    started = wait_for(lambda: recorded("in_progress"), 60, "the in_progress delivery")
    completed = wait_for(lambda: recorded("completed"), 60, "the completed delivery")
    runner = started.payload()["workflow_job"]["runner_name"]
    processed = sandbox.runtime.processed["lifecycle"]

    assert post(url, completed.body, dict(completed.headers))[0] == 202
    wait_for(lambda: sandbox.runtime.processed["lifecycle"] == processed + 1, 60, "completed to be handled")
    assert record(sandbox, "job", job).state == "completed"
    assert record(sandbox, "runner", runner).state == "finished"

    assert post(url, started.body, dict(started.headers))[0] == 202
    assert post(url, completed.body, dict(completed.headers))[0] == 202  # a duplicate is harmless
    wait_for(lambda: sandbox.runtime.processed["lifecycle"] == processed + 3, 60, "both to be handled")

    job_record, runner_record = record(sandbox, "job", job), record(sandbox, "runner", runner)
    assert job_record.state == "completed" and job_record.data["conclusion"] == "success"
    assert runner_record.state == "finished" and runner_record.data["serving_job_id"] == job
    assert runner_record.expires_at is not None
    assert launches_per_job(sandbox) == Counter({job: 1})
