"""The simulator as other processes use it: the runner agent command, the CLI and the admin API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests
from github_support import RawApp, WebhookReceiver, make_client
from jitr_core.model import Scope
from jitr_core.secret import Secret
from jitr_github import GitHubClient
from jitr_github.simulator import GitHubSimulator

AGENT = [sys.executable, "-m", "jitr_github.simulator.agent"]


def _register(sim: GitHubSimulator, name: str) -> str:
    app = RawApp(sim)
    installation = app.call("GET", "/orgs/{org}/installation", 200, app.jwt(), org="octo-org")["id"]
    return str(
        app.register(app.token(installation), name, ["self-hosted", "linux"], "octo-org", "app")["encoded_jit_config"]
    )


def test_the_agent_runs_whatever_job_it_is_given_and_deregisters(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    older = sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="older")
    config = _register(sim, "jitr-linux-2-1")
    sim.queue_job("octo-org/app", ["self-hosted", "linux"], name="its-own")
    done = subprocess.run([*AGENT, "--jitconfig", config], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Running job: older" in done.stdout
    job = sim.job(older)
    assert (job.status, job.conclusion, job.runner_name) == ("completed", "success", "jitr-linux-2-1")
    assert sim.runners() == []


def test_the_agent_reads_its_config_from_the_environment_like_the_runner(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    job = sim.queue_job("octo-org/app", ["self-hosted"])
    env = dict(os.environ, ACTIONS_RUNNER_INPUT_JITCONFIG=_register(sim, "r-env"))
    done = subprocess.run([*AGENT, "--conclusion", "failure"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sim.job(job).conclusion == "failure"


def test_the_agent_refuses_a_used_config_and_gives_up_without_a_job(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    config = _register(sim, "r-idle")
    idle = subprocess.run(
        [*AGENT, "--jitconfig", config, "--wait-seconds", "0.2"], capture_output=True, text=True, timeout=60
    )
    assert idle.returncode == 2, idle.stderr
    (runner,) = sim.runners()
    assert runner.status == "offline"
    reused = subprocess.run([*AGENT, "--jitconfig", config], capture_output=True, text=True, timeout=60)
    assert reused.returncode == 1
    assert "already used" in reused.stderr
    garbage = subprocess.run([*AGENT, "--jitconfig", "not-base64!"], capture_output=True, text=True, timeout=60)
    assert garbage.returncode == 1


def test_the_agent_exits_when_its_registration_is_removed(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    sim.add_installation("octo-org", repos=["app"])
    config = _register(sim, "r-surplus")
    agent = subprocess.Popen([*AGENT, "--jitconfig", config], stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    assert "Connected" in agent.stdout.readline()
    client = make_client(sim)
    (runner,) = client.list_runners(Scope(None, "octo-org", "app"))
    assert client.delete_runner(Scope(None, "octo-org", "app"), runner.id)
    assert agent.wait(timeout=60) == 2


def test_the_cli_serves_a_simulator_other_processes_can_drive(tmp_path: Path, receiver: WebhookReceiver) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("cli-webhook-secret-5d1e\n")
    command = [sys.executable, "-m", "jitr_github.simulator", "--port", "0", "--api-prefix", "/api/v3"]
    command += [
        "--webhook-url",
        receiver.url,
        "--webhook-secret-file",
        str(secret_file),
        "--key-file",
        str(tmp_path / "key.pem"),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        assert info["base_url"].endswith("/api/v3")
        assert Path(info["private_key_file"]).stat().st_mode & 0o777 == 0o600
        admin = info["admin_url"]
        installed = requests.post(f"{admin}/installations", json={"owner": "octo-org", "repos": ["app"]})
        assert installed.status_code == 201
        queued = requests.post(f"{admin}/jobs", json={"repository": "octo-org/app", "labels": ["self-hosted"]})
        job_id = queued.json()["job_id"]
        assert requests.post(f"{admin}/deliveries/drain", json={"timeout": 10}).json() == {"drained": True}
        (delivery,) = receiver.wait_for(1)
        assert delivery.payload()["workflow_job"]["id"] == job_id
        client = GitHubClient(str(info["app_id"]), Secret(Path(info["private_key_file"]).read_text()), info["base_url"])
        assert client.installation_for("octo-org", "app") == installed.json()["installation_id"]
        jobs = requests.get(f"{admin}/jobs").json()["jobs"]
        assert [j["status"] for j in jobs] == ["queued"]
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_the_admin_api_drives_everything_over_http(github_simulator: GitHubSimulator) -> None:
    admin = github_simulator.root_url + "/_sim"
    assert requests.get(f"{admin}/info").json()["app_id"] == github_simulator.app_id
    assert requests.post(f"{admin}/installations", json={"owner": "octo-org", "repos": ["app"]}).status_code == 201
    assert (
        requests.post(f"{admin}/repositories", json={"repository": "octo-org/site", "private": False}).status_code
        == 201
    )
    assert requests.post(f"{admin}/runner-groups", json={"org": "octo-org", "name": "gpu"}).status_code == 201
    job_id = requests.post(f"{admin}/jobs", json={"repository": "octo-org/app", "labels": ["self-hosted"]}).json()[
        "job_id"
    ]
    assert requests.get(f"{admin}/jobs/{job_id}").json()["status"] == "queued"
    assert requests.post(f"{admin}/jobs/{job_id}/cancel").json()["conclusion"] == "cancelled"
    assert requests.post(f"{admin}/jobs", json={"repository": "nobody/app", "labels": ["x"]}).status_code == 404
    faults = requests.put(f"{admin}/faults", json={"seed": 3, "http_5xx": 0.25}).json()
    assert (faults["seed"], faults["http_5xx"]) == (3, 0.25)
    assert github_simulator.faults.http_5xx == 0.25
    assert requests.put(f"{admin}/faults", json={"nonsense": 1}).status_code == 400
    assert requests.put(f"{admin}/webhook", json={"url": None, "secret": None}).status_code == 204
    assert requests.get(f"{admin}/calls").json() == {}
    assert requests.get(f"{admin}/runners").json() == {"runners": []}
    assert requests.get(f"{admin}/deliveries").json() == {"deliveries": []}
    assert requests.post(f"{admin}/agent/connect", json={"jitconfig": "bm9wZQ=="}).status_code == 400
    assert requests.get(f"{admin}/agent/runners/1/job").status_code == 401
    assert requests.get(f"{admin}/nothing").status_code == 404
