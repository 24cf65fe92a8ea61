"""Re-running a failed job (``POST .../actions/jobs/{id}/rerun``) and jobs that wait for approval.

A re-run is a new job (a new id) in the run's next attempt, announced by a ``queued`` webhook
with ``run_attempt`` 2; GitHub refuses it without ``actions: write`` (403) and for a job of a
run still going or of an older attempt (409). A job waiting for an environment's approval is
announced as ``waiting`` and no runner takes it before it is approved.
"""

from __future__ import annotations

import pytest
from github_support import RawApp, WebhookReceiver, make_client, wait_until
from jitr_core.errors import GitHubAuthError, GitHubConflictError, GitHubNotFoundError
from jitr_core.model import Scope
from jitr_github.simulator import GitHubSimulator

RERUN = "POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"
SCOPE = Scope(None, "octo-org", "app")
SECRET = "rerun-webhook-secret-5e1d"


def failed_job(sim: GitHubSimulator) -> int:
    """A job whose runner vanished mid-job (a spot reclaim): GitHub failed it."""
    client = make_client(sim)
    job_id = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="build")
    runner = sim.agent_connect(client.generate_jit_config(SCOPE, "r1", ["self-hosted", "linux"], "").encoded.reveal())
    assert sim.job(job_id).status == "in_progress"
    sim.kill_runner(runner.id)
    assert (sim.job(job_id).status, sim.job(job_id).conclusion) == ("completed", "failure")
    return job_id


def queued_payloads(receiver: WebhookReceiver, count: int) -> list[dict]:
    wait_until(lambda: sum(1 for r in receiver.received if r.payload().get("action") == "queued") >= count)
    return [r.payload() for r in receiver.received if r.payload().get("action") == "queued"]


def test_a_rerun_is_a_new_job_in_the_next_attempt_announced_as_queued(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    sim.set_webhook(receiver.url, SECRET)
    job_id = failed_job(sim)

    make_client(sim).rerun_job(SCOPE, job_id)

    [first, again] = sorted((j for j in sim.jobs() if j.run_id == sim.job(job_id).run_id), key=lambda j: j.id)
    assert first.id == job_id and again.id != job_id
    assert (again.status, again.run_attempt, again.name, again.labels) == ("queued", 2, "build", first.labels)
    assert sim.job(job_id).run_attempt == 1, "the failed job stays in its own attempt"
    payload = queued_payloads(receiver, 2)[-1]["workflow_job"]
    assert (payload["id"], payload["run_attempt"], payload["status"]) == (again.id, 2, "queued")
    assert sim.call_counts()[RERUN] == 1


def test_the_rerun_answers_conform_to_githubs_description(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    job_id = failed_job(sim)
    caller = RawApp(sim)
    token = caller.token(installation)
    path = "/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"
    caller.call("POST", path, 201, token, owner="octo-org", repo="app", job_id=job_id)
    sim.set_actions_write(False)
    caller.call("POST", path, 403, token, owner="octo-org", repo="app", job_id=job_id)


def test_a_second_rerun_of_the_same_attempt_is_refused(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    job_id = failed_job(sim)
    client.rerun_job(SCOPE, job_id)
    with pytest.raises(GitHubConflictError) as caught:
        client.rerun_job(SCOPE, job_id)
    assert caught.value.status == 409
    assert len([j for j in sim.jobs() if j.run_id == sim.job(job_id).run_id]) == 2


def test_a_job_of_a_run_still_going_cannot_be_rerun(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job_id = failed_job(sim)
    sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="test", run_id=sim.job(job_id).run_id)
    with pytest.raises(GitHubConflictError):
        make_client(sim).rerun_job(SCOPE, job_id)


def test_without_actions_write_github_answers_403(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job_id = failed_job(sim)
    sim.set_actions_write(False)
    with pytest.raises(GitHubAuthError) as caught:
        make_client(sim).rerun_job(SCOPE, job_id)
    assert caught.value.status == 403
    assert len([j for j in sim.jobs() if j.run_id == sim.job(job_id).run_id]) == 1


def test_a_job_of_another_repository_is_not_found(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app", "other"])
    job_id = failed_job(sim)
    with pytest.raises(GitHubNotFoundError):
        make_client(sim).rerun_job(Scope(None, "octo-org", "other"), job_id)


def test_a_5xx_on_the_rerun_is_retried_by_the_client(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job_id = failed_job(sim)
    sim.fail_next(1, 502, path_contains="/rerun")
    make_client(sim).rerun_job(SCOPE, job_id)
    assert sim.call_counts()[RERUN] == 2
    assert len([j for j in sim.jobs() if j.run_id == sim.job(job_id).run_id]) == 2


def test_a_waiting_job_is_announced_and_taken_only_once_approved(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    sim.set_webhook(receiver.url, SECRET)
    client = make_client(sim)
    job_id = sim.queue_job("octo-org/app", ["self-hosted", "linux"], waiting=True)
    runner = sim.agent_connect(client.generate_jit_config(SCOPE, "r1", ["self-hosted", "linux"], "").encoded.reveal())
    assert sim.job(job_id).status == "waiting"
    assert sim.agent_poll(runner.id) is None
    assert job_id not in {j.job_id for j in client.queued_jobs(SCOPE)}

    sim.approve_job(job_id)

    assert sim.job(job_id).status == "in_progress"
    wait_until(lambda: [r.payload()["action"] for r in receiver.received][:3] == ["waiting", "queued", "in_progress"])
    waiting = receiver.received[0].payload()["workflow_job"]
    assert (waiting["id"], waiting["status"]) == (job_id, "waiting")
    with pytest.raises(Exception, match="not waiting"):
        sim.approve_job(job_id)
