"""GitHub errors a retry cannot fix dead-letter the message at once with the reason, and leave
nothing behind that would hold up a corrected delivery of the same job."""

from __future__ import annotations

from e2e_support import POOL, QUIET, dead_letters, record, wait_for
from jitr_core.messages import JobMessage, encode
from jitr_core.services.consume import Disposition, consume

ACCESS_TOKENS = "POST /app/installations/{installation_id}/access_tokens"


def _message(installation_id: int, delivery_id: str) -> str:
    message = JobMessage(
        job_id=4242,
        run_id=99,
        repository="octo-org/api",
        owner="octo-org",
        installation_id=installation_id,
        labels=tuple(POOL["labels"]),
        private=True,
        delivery_id=delivery_id,
    )
    return encode(message).body


def test_an_unknown_installation_is_dead_lettered_and_a_corrected_delivery_launches_at_once(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[{**POOL, "handoff": "metadata"}], intervals=QUIET)  # minted at scaleup
    app = sandbox.app
    right = app.github.installation_for("octo-org", "api")
    wrong = right + 1000
    sandbox.sim.reset_call_counts()

    first = consume(app.backend, "jobs", _message(wrong, "d-wrong"), app.scaleup.handle)

    assert first.disposition is Disposition.DONE and first.detail.startswith("dead-lettered"), first
    (reason,) = [reason for _, reason in dead_letters(sandbox, "jobs")]
    assert f"installation {wrong}" in reason and "404" in reason, reason
    assert sandbox.sim.call_counts().get(ACCESS_TOKENS) == 1  # a 404 is not retried
    assert record(sandbox, "runner", "jitr-linux-4242-1") is None  # the claim is released

    second = consume(app.backend, "jobs", _message(right, "d-right"), app.scaleup.handle)

    assert (second.disposition, second.detail) == (Disposition.DONE, "launched"), second
    runner = record(sandbox, "runner", "jitr-linux-4242-1")
    assert runner is not None and runner.data["installation_id"] == right
    job = record(sandbox, "job", 4242)
    assert job is not None and job.data["installation_id"] == right
    repo = record(sandbox, "repo", "octo-org/api")
    assert repo is not None and repo.data["installation_id"] == right  # what the rebalancer asks GitHub with


def test_with_the_broker_an_unknown_installation_dead_letters_the_job_when_its_vm_asks(e2e_sandbox):
    """The broker mints when the VM asks: GitHub's 404 is not retried; the VM is refused (410) and
    ends, its runner is retired and the job dead-lettered with the reason, as after runners that
    exit without a job. The VM was launched already, so a delivery of the same attempt launches
    nothing more."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    app = sandbox.app
    assert app.settings.pool(POOL["name"]).handoff == "broker"
    right = app.github.installation_for("octo-org", "api")
    wrong = right + 1000
    sandbox.sim.reset_call_counts()

    first = consume(app.backend, "jobs", _message(wrong, "d-wrong"), app.scaleup.handle)

    assert (first.disposition, first.detail) == (Disposition.DONE, "launched"), first
    (reason,) = wait_for(lambda: [r for _, r in dead_letters(sandbox, "jobs")], 30, "the job's dead letter")
    assert f"installation {wrong}" in reason and "404" in reason, reason
    assert sandbox.sim.call_counts().get(ACCESS_TOKENS) == 1  # a 404 is not retried
    wait_for(lambda: not [vm for vm in app.backend.list_vms() if vm.running], 30, "the refused VM to end")
    runner, job = record(sandbox, "runner", "jitr-linux-4242-1"), record(sandbox, "job", 4242)
    assert runner is not None and runner.state == "retired" and runner.data["retired_reason"] == "not-served"
    assert job is not None and job.state == "dead-lettered" and "installation" in job.data["dead_letter_reason"]

    again = consume(app.backend, "jobs", _message(right, "d-again"), app.scaleup.handle)

    assert (again.disposition, again.detail) == (Disposition.DONE, "job-dead-lettered"), again
    assert sum(sandbox.vms.launches.values()) == 1  # no second VM
