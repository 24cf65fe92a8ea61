"""The simulator assigns jobs to runners as GitHub does, and jobs and runners live as on GitHub."""

from __future__ import annotations

import pytest
import requests
from github_support import FakeClock, RawApp, SimFactory, wait_until
from jitr_github.simulator import GitHubSimulator, SimulatorError
from jitr_github.simulator.jitconfig import decode_jit_config


def _runner_config(
    sim: GitHubSimulator,
    name: str,
    labels: list[str],
    *,
    org: str = "octo-org",
    repo: str | None = "app",
    group: int = 1,
) -> str:
    """Register a JIT runner over REST as the App does; its encoded config."""
    app = RawApp(sim)
    installation = app.call("GET", "/orgs/{org}/installation", 200, app.jwt(), org=org)["id"]
    return str(app.register(app.token(installation), name, labels, org, repo, group)["encoded_jit_config"])


def test_a_runner_takes_the_oldest_matching_job_not_the_one_it_was_launched_for(
    github_simulator: GitHubSimulator,
) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job_a = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="a")
    job_b = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="b")
    runner_for_b = sim.agent_connect(_runner_config(sim, f"jitr-linux-{job_b}-1", ["self-hosted", "linux"]))
    assert sim.job(job_a).runner_name == runner_for_b.name
    assert sim.job(job_a).status == "in_progress"
    assert sim.job(job_b).status == "queued"
    assigned = sim.agent_poll(runner_for_b.id)
    assert assigned is not None
    assert assigned.id == job_a


def test_labels_match_case_insensitively_and_self_hosted_is_implicit(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["Linux", "X64"]))
    assert "self-hosted" in runner.labels
    gpu_job = sim.queue_job("octo-org/app", ["self-hosted", "linux", "gpu"])
    assert sim.job(gpu_job).status == "queued", "a job needing a label the runner lacks must wait"
    job = sim.queue_job("octo-org/app", ["SELF-HOSTED", "linux", "x64"])
    assert sim.job(job).runner_id == runner.id, "an idle runner takes a matching job the moment it is queued"
    assert sim.job(gpu_job).status == "queued"


def test_repository_runners_serve_only_their_repository(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app", "web"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"], repo="app"))
    other = sim.queue_job("octo-org/web", ["self-hosted", "linux"])
    assert sim.job(other).status == "queued"
    own = sim.queue_job("octo-org/app", ["self-hosted", "linux"])
    assert sim.job(own).runner_id == runner.id


def test_organisation_runners_serve_private_repositories_and_public_ones_only_when_their_group_allows(
    make_sim: SimFactory,
) -> None:
    sim = make_sim()
    sim.add_installation("octo-org", repos=["private-app"])
    sim.add_repository("octo-org/public-site", private=False)
    open_group = sim.add_runner_group("octo-org", "open", allows_public_repositories=True)
    public_job = sim.queue_job("octo-org/public-site", ["self-hosted"])
    default_runner = sim.agent_connect(_runner_config(sim, "default-1", ["linux"], repo=None))
    assert sim.job(public_job).status == "queued", "the Default group is closed to public repositories"
    private_job = sim.queue_job("octo-org/private-app", ["self-hosted"])
    assert sim.job(private_job).runner_id == default_runner.id
    open_runner = sim.agent_connect(_runner_config(sim, "open-1", ["linux"], repo=None, group=open_group))
    assert sim.job(public_job).runner_id == open_runner.id
    assert sim.job(public_job).runner_group_name == "open"


def test_runs_are_in_progress_while_one_of_their_jobs_still_waits(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    first = sim.queue_job("octo-org/app", ["self-hosted"], name="matrix-1")
    run_id = sim.job(first).run_id
    second = sim.queue_job("octo-org/app", ["self-hosted"], name="matrix-2", run_id=run_id)
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    assert sim.job(first).runner_id == runner.id
    assert sim.job(second).status == "queued"
    app = RawApp(sim)
    token = app.token(app.call("GET", "/orgs/{org}/installation", 200, app.jwt(), org="octo-org")["id"])
    runs = app.call("GET", "/repos/{owner}/{repo}/actions/runs", 200, token, owner="octo-org", repo="app")
    assert [r["status"] for r in runs["workflow_runs"]] == ["in_progress"]
    sim.agent_finish(runner.id)
    runs = app.call("GET", "/repos/{owner}/{repo}/actions/runs", 200, token, owner="octo-org", repo="app")
    assert [r["status"] for r in runs["workflow_runs"]] == ["queued"]


def test_finishing_and_leaving_deregisters_the_ephemeral_runner(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    with pytest.raises(SimulatorError, match="finish it first"):
        sim.agent_leave(runner.id)
    done = sim.agent_finish(runner.id, "success")
    assert (done.status, done.conclusion, done.runner_name) == ("completed", "success", "r1")
    later = sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.job(later).status == "queued", "an ephemeral runner takes one job only"
    sim.agent_leave(runner.id)
    assert sim.runners("octo-org") == []


def test_a_runner_leaving_without_a_job_stays_registered_offline(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    sim.agent_leave(runner.id)
    (listed,) = sim.runners("octo-org")
    assert (listed.name, listed.status, listed.busy) == ("r1", "offline", False)


def test_jit_configs_are_single_use_and_must_be_known(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    config = _runner_config(sim, "r1", ["linux"])
    sim.agent_connect(config)
    with pytest.raises(SimulatorError, match="already used") as used:
        sim.agent_connect(config)
    assert used.value.status == 409
    with pytest.raises(SimulatorError):
        sim.agent_connect("bm90IGEgY29uZmln")


def test_jit_configs_carry_the_runner_files(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    files = decode_jit_config(_runner_config(sim, "r1", ["linux"]))
    assert set(files) == {".runner", ".credentials", ".credentials_rsaparams"}
    assert files[".runner"]["agentName"] == "r1"
    assert files[".runner"]["serverUrl"] == sim.root_url + "/"
    assert files[".credentials"]["scheme"] == "OAuth"
    assert set(files[".credentials_rsaparams"]) == {"d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"}


def test_cancelling_a_queued_job_completes_it_without_a_runner(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job = sim.queue_job("octo-org/app", ["self-hosted"])
    cancelled = sim.cancel_job(job)
    assert (cancelled.status, cancelled.conclusion, cancelled.runner_name) == ("completed", "cancelled", None)
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    assert sim.agent_poll(runner.id) is None, "a cancelled job is never assigned"
    with pytest.raises(SimulatorError, match="already completed"):
        sim.cancel_job(job)


def test_cancelling_a_running_job_tells_its_runner(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job = sim.queue_job("octo-org/app", ["self-hosted"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    sim.cancel_job(job)
    seen = sim.agent_poll(runner.id)
    assert seen is not None
    assert (seen.status, seen.conclusion) == ("completed", "cancelled")
    sim.agent_leave(runner.id)
    assert sim.runners() == []


def test_a_killed_runner_goes_offline_and_fails_its_job(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job = sim.queue_job("octo-org/app", ["self-hosted"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    sim.kill_runner(runner.id)
    assert (sim.job(job).status, sim.job(job).conclusion) == ("completed", "failure")
    (ghost,) = sim.runners()
    assert (ghost.status, ghost.busy) == ("offline", False)


def test_runners_connected_over_http_go_offline_when_they_stop_polling(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, heartbeat_timeout_s=30)
    sim.add_installation("octo-org", repos=["app"])
    config = _runner_config(sim, "r1", ["linux"])
    connected = requests.post(f"{sim.root_url}/_sim/agent/connect", json={"jitconfig": config})
    assert connected.status_code == 201
    job = sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.job(job).status == "in_progress"
    clock.advance(31)
    assert wait_until(lambda: sim.job(job).status == "completed")
    assert (sim.job(job).status, sim.job(job).conclusion) == ("completed", "failure")
    assert sim.runners()[0].status == "offline"


def test_busy_runners_cannot_be_deleted(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    runner = sim.agent_connect(_runner_config(sim, "r1", ["linux"]))
    app = RawApp(sim)
    path = "/repos/{owner}/{repo}/actions/runners/{runner_id}"
    answer = app.call("DELETE", path, 422, app.token(installation), owner="octo-org", repo="app", runner_id=runner.id)
    assert "still running a job" in answer["message"]
