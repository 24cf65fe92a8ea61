"""Queued jobs as GitHub lists them, read with conditional requests, and single job lookups."""

from __future__ import annotations

import pytest
from github_support import make_client
from jitr_core.errors import GitHubError, GitHubNotFoundError
from jitr_core.model import Scope
from jitr_github.simulator import GitHubSimulator

RUNS = "GET /repos/{owner}/{repo}/actions/runs"
RUN_JOBS = "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs"


def test_queued_jobs_include_waiting_jobs_of_runs_already_in_progress(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    lonely = sim.queue_job("octo-org/app", ["self-hosted", "gpu"], name="lonely")
    first = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="matrix-1")
    second = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="matrix-2", run_id=sim.job(first).run_id)
    runner = client.generate_jit_config(scope, "r1", ["self-hosted", "linux"], "")
    sim.agent_connect(runner.encoded.reveal())
    assert sim.job(first).status == "in_progress"

    queued = {job.job_id: job for job in client.queued_jobs(scope)}
    assert set(queued) == {lonely, second}
    job = queued[second]
    assert (job.run_id, job.run_attempt, job.repository, job.name) == (
        sim.job(first).run_id,
        1,
        "octo-org/app",
        "matrix-2",
    )
    assert job.labels == ("self-hosted", "linux")
    assert job.created_at is not None


def test_unchanged_lists_are_answered_304_and_cost_no_rate_limit(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(installation, "octo-org", "app")
    jobs = [sim.queue_job("octo-org/app", ["self-hosted"]) for _ in range(3)]
    assert {j.job_id for j in client.queued_jobs(scope)} == set(jobs)
    spent = client.rate_limits()[f"installation:{installation}"].remaining
    calls = sum(sim.call_counts().values())
    assert {j.job_id for j in client.queued_jobs(scope)} == set(jobs), "a 304 answers with the remembered list"
    assert sum(sim.call_counts().values()) > calls, "the lists were asked for again"
    assert client.rate_limits()[f"installation:{installation}"].remaining == spent
    newest = sim.queue_job("octo-org/app", ["self-hosted"])
    assert newest in {j.job_id for j in client.queued_jobs(scope)}


def test_queued_jobs_follow_pages_of_runs(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    jobs = {sim.queue_job("octo-org/app", ["self-hosted"]) for _ in range(120)}
    assert {j.job_id for j in client.queued_jobs(Scope(None, "octo-org", "app"))} == jobs
    assert sim.call_counts()[RUNS] == 3  # two pages of queued runs, one (empty) page of runs in progress
    assert sim.call_counts()[RUN_JOBS] == 120
    # polled again, nothing changed: each page answers 304, which carries no Link header
    assert {j.job_id for j in client.queued_jobs(Scope(None, "octo-org", "app"))} == jobs
    assert sim.call_counts()[RUNS] == 6


def test_finished_and_cancelled_jobs_are_not_queued(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    sim.cancel_job(sim.queue_job("octo-org/app", ["self-hosted"]))
    assert client.queued_jobs(scope) == []


def test_a_single_job_is_looked_up(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    job_id = sim.queue_job("octo-org/app", ["self-hosted", "linux"])
    state = client.get_job(scope, job_id)
    assert (state.status, state.conclusion, state.runner_name, state.labels) == (
        "queued",
        None,
        None,
        ("self-hosted", "linux"),
    )
    config = client.generate_jit_config(scope, "r1", ["self-hosted", "linux"], "")
    runner = sim.agent_connect(config.encoded.reveal())
    sim.agent_finish(runner.id, "success")
    state = client.get_job(scope, job_id)
    assert (state.status, state.conclusion, state.runner_name, state.runner_id) == (
        "completed",
        "success",
        "r1",
        runner.id,
    )
    with pytest.raises(GitHubNotFoundError):
        client.get_job(scope, 1)


def test_jobs_are_listed_per_repository_only(github_simulator: GitHubSimulator) -> None:
    github_simulator.add_installation("octo-org", repos=["app"])
    client = make_client(github_simulator)
    with pytest.raises(GitHubError, match="per repository"):
        client.queued_jobs(Scope(None, "octo-org"))


def test_runs_younger_than_the_cutoff_are_skipped_without_reading_their_jobs(
    github_simulator: GitHubSimulator,
) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    jobs = {sim.queue_job("octo-org/app", ["self-hosted", "linux"]) for _ in range(3)}
    created = sim.clock()
    sim.reset_call_counts()
    assert client.queued_jobs(scope, created_before=created - 60) == []
    assert sim.call_counts().get(RUN_JOBS, 0) == 0
    assert {j.job_id for j in client.queued_jobs(scope, created_before=created + 60)} == jobs
    assert sim.call_counts()[RUN_JOBS] == 3
