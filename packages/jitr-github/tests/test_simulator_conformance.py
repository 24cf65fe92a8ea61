"""The simulator answers every operation the client uses with bodies GitHub documents.

Walks each operation of the OpenAPI subset (and the three the client uses beyond it) over
HTTP and validates every answer, errors included, against the documented schema.
"""

from __future__ import annotations

import pytest
import requests
from github_manifest_support import manifest_code
from github_support import OPERATIONS, RawApp, WebhookReceiver, assert_conforms
from jitr_github.simulator import GitHubSimulator


def test_every_operation_answers_with_documented_shapes(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.set_webhook(receiver.url, "conformance-webhook-secret")
    org_installation = sim.add_installation("octo-org", repos=["octo-repo"])
    user_installation = sim.add_installation("octocat", owner_type="User", repos=["hello"])
    group = sim.add_runner_group("octo-org", "linux-runners")
    caller = RawApp(sim)
    app_jwt = caller.jwt()

    assert (
        caller.call("GET", "/repos/{owner}/{repo}/installation", 200, app_jwt, owner="octo-org", repo="octo-repo")["id"]
        == org_installation
    )
    assert caller.call("GET", "/orgs/{org}/installation", 200, app_jwt, org="octo-org")["id"] == org_installation
    assert (
        caller.call("GET", "/users/{username}/installation", 200, app_jwt, username="octocat")["id"]
        == user_installation
    )
    caller.call("GET", "/repos/{owner}/{repo}/installation", 404, app_jwt, owner="octo-org", repo="missing")
    token = caller.token(org_installation)

    registration = {"name": "r-repo", "runner_group_id": 1, "labels": ["self-hosted", "X64", "linux"]}
    repo_runner = caller.call(
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        201,
        token,
        json=registration,
        owner="octo-org",
        repo="octo-repo",
    )
    caller.call(
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        409,
        token,
        json=registration,
        owner="octo-org",
        repo="octo-repo",
    )
    caller.call(
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        422,
        token,
        json={"name": "x", "runner_group_id": 1, "labels": []},
        owner="octo-org",
        repo="octo-repo",
    )
    caller.call(
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        404,
        token,
        json=registration,
        owner="octo-org",
        repo="missing",
    )
    org_registration = {
        "name": "r-org",
        "runner_group_id": group,
        "labels": ["self-hosted", "gpu"],
        "work_folder": "_w",
    }
    org_runner = caller.call(
        "POST", "/orgs/{org}/actions/runners/generate-jitconfig", 201, token, json=org_registration, org="octo-org"
    )
    caller.call(
        "POST", "/orgs/{org}/actions/runners/generate-jitconfig", 409, token, json=org_registration, org="octo-org"
    )
    caller.call(
        "POST", "/orgs/{org}/actions/runners/generate-jitconfig", 404, token, json=org_registration, org="no-such-org"
    )

    listed = caller.call("GET", "/repos/{owner}/{repo}/actions/runners", 200, token, owner="octo-org", repo="octo-repo")
    assert [r["name"] for r in listed["runners"]] == ["r-repo"]
    listed = caller.call("GET", "/orgs/{org}/actions/runners", 200, token, org="octo-org")
    assert [r["name"] for r in listed["runners"]] == ["r-org"]
    caller.call(
        "GET",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
        200,
        token,
        owner="octo-org",
        repo="octo-repo",
        runner_id=repo_runner["runner"]["id"],
    )
    groups = caller.call("GET", "/orgs/{org}/actions/runner-groups", 200, token, org="octo-org")
    assert {g["name"] for g in groups["runner_groups"]} == {"Default", "linux-runners"}

    job_id = sim.queue_job("octo-org/octo-repo", ["self-hosted", "linux"])
    sim.queue_job("octo-org/octo-repo", ["self-hosted", "linux"])
    runner = sim.agent_connect(repo_runner["encoded_jit_config"])
    caller.call(
        "DELETE",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
        422,
        token,
        owner="octo-org",
        repo="octo-repo",
        runner_id=runner.id,
    )
    runs = caller.call(
        "GET",
        "/repos/{owner}/{repo}/actions/runs",
        200,
        token,
        query="?status=queued",
        owner="octo-org",
        repo="octo-repo",
    )
    assert runs["total_count"] == 1
    runs = caller.call("GET", "/repos/{owner}/{repo}/actions/runs", 200, token, owner="octo-org", repo="octo-repo")
    assert {r["status"] for r in runs["workflow_runs"]} == {"queued", "in_progress"}
    jobs = caller.call(
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        200,
        token,
        owner="octo-org",
        repo="octo-repo",
        run_id=sim.job(job_id).run_id,
    )
    assert jobs["jobs"][0]["runner_name"] == "r-repo"
    sim.agent_finish(runner.id, "failure")
    job = caller.call(
        "GET",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        200,
        token,
        owner="octo-org",
        repo="octo-repo",
        job_id=job_id,
    )
    assert (job["status"], job["conclusion"]) == ("completed", "failure")
    rerun = "/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"
    caller.call("POST", rerun, 201, token, owner="octo-org", repo="octo-repo", job_id=job_id)
    caller.call("POST", rerun, 409, token, owner="octo-org", repo="octo-repo", job_id=job_id)

    caller.call(
        "DELETE",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
        204,
        token,
        owner="octo-org",
        repo="octo-repo",
        runner_id=runner.id,
    )
    caller.call(
        "DELETE",
        "/orgs/{org}/actions/runners/{runner_id}",
        204,
        token,
        org="octo-org",
        runner_id=org_runner["runner"]["id"],
    )
    caller.call(
        "DELETE",
        "/orgs/{org}/actions/runners/{runner_id}",
        404,
        token,
        org="octo-org",
        runner_id=org_runner["runner"]["id"],
    )

    assert caller.call("GET", "/rate_limit", 200, token)["resources"]["core"]["limit"] == 5000
    caller.call("POST", "/app/installations/{installation_id}/access_tokens", 404, app_jwt, installation_id=999)

    assert sim.drain_webhooks()
    deliveries = caller.call("GET", "/app/hook/deliveries", 200, app_jwt)
    assert {d["action"] for d in deliveries} == {"queued", "in_progress", "completed"}
    caller.call("POST", "/app/hook/deliveries/{delivery_id}/attempts", 202, app_jwt, delivery_id=deliveries[0]["id"])
    caller.call("POST", "/app/hook/deliveries/{delivery_id}/attempts", 404, app_jwt, delivery_id=1)

    code = manifest_code(sim, {"name": "conformance-app", "url": "https://example.com", "redirect_url": receiver.url})
    created = caller.call("POST", "/app-manifests/{code}/conversions", 201, "", code=code)
    assert created["pem"].startswith("-----BEGIN") and created["owner"]["login"] == "monalisa"
    caller.call("POST", "/app-manifests/{code}/conversions", 404, "", code=code)
    taken = manifest_code(sim, {"name": "taken-app", "url": "https://example.com", "redirect_url": receiver.url})
    manifest_code(sim, {"name": "Taken App", "url": "https://example.com", "redirect_url": receiver.url}, convert=True)
    caller.call("POST", "/app-manifests/{code}/conversions", 422, "", code=taken)

    documented = set(OPERATIONS)
    assert documented <= caller.walked, f"operations not walked: {documented - caller.walked}"


def test_unknown_paths_and_methods_answer_like_github(github_simulator: GitHubSimulator) -> None:
    base = github_simulator.base_url
    assert requests.get(f"{base}/no/such/endpoint").status_code == 404
    answer = requests.put(f"{base}/rate_limit")
    assert answer.status_code == 405
    assert set(answer.json()) >= {"message", "documentation_url"}


@pytest.mark.parametrize("credential", ["", "Bearer not-a-token", "token ghs_unknown"])
def test_unauthenticated_calls_are_refused(github_simulator: GitHubSimulator, credential: str) -> None:
    github_simulator.add_installation("octo-org", repos=["octo-repo"])
    headers = {"Authorization": credential} if credential else {}
    answer = requests.get(f"{github_simulator.base_url}/repos/octo-org/octo-repo/actions/runners", headers=headers)
    assert answer.status_code == 401
    assert_conforms("POST", "/app/installations/{installation_id}/access_tokens", 401, answer.json())
