"""The Cloud Run target ``broker`` served by functions-framework from a ``jitr bundle gcp`` directory.

A broker-mode pool's scaleup inserts a GCE instance (the fake) whose startup script holds no
secret; the test plays the instance: it signs a ``format=full`` identity token for it with a key
the deployment's ``[gcp] identity_certs_url`` lists (a small key server standing in for Google's),
asks the broker over HTTP and runs the simulator's agent with the config it gets. A token signed
by another key, a second call, a wrong method and an oversized body get nothing.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from e2e_support import get, post
from gcp_support import POOL, Deployment, quiet_job, runner, wait_for
from google.auth import crypt, jwt
from jitr_gcp.testing.backend import PROJECT
from jitr_gcp.testing.fakehttp import JsonServer
from jitr_gcp.testing.identity import GoogleKey

pytest_plugins = ["conftest_gcp"]

AUDIENCE = "https://broker-test.example/jitr"
JSON = {"Content-Type": "application/json"}


class _Keys(JsonServer):
    """Google's ``oauth2/v1/certs``: ``{key id: PEM certificate}``."""

    def __init__(self, certificates: dict[str, str]) -> None:
        super().__init__()
        self.certificates = certificates

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return (200, dict(self.certificates)) if method == "GET" else (404, {"error": "not found"})


def _signer(kid: str) -> tuple[crypt.RSASigner, str]:
    key = GoogleKey(kid)
    return key.signer, key.certificate


def _token(signer: crypt.RSASigner, instance_name: str) -> str:
    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "iss": "https://accounts.google.com",
        "sub": "112233445566778899000",
        "iat": now,
        "exp": now + 3600,
        "google": {
            "compute_engine": {
                "instance_id": "4567890123456789012",
                "instance_name": instance_name,
                "project_id": PROJECT,
                "zone": "us-central1-a",
            }
        },
    }
    return jwt.encode(signer, claims).decode()


def test_a_gce_vm_pulls_its_config_once_from_the_broker_target(deployment: Deployment) -> None:
    google, certificate = _signer("google-key-1")
    impostor, _ = _signer("google-key-1")
    keys = _Keys({"google-key-1": certificate}).start()
    try:
        env = {
            "JITR_POOLS": json.dumps([{**POOL, "handoff": "broker"}]),
            "JITR_BROKER_URL": AUDIENCE,
            "JITR_GCP_IDENTITY_CERTS_URL": keys.url + "/oauth2/v1/certs",
        }
        scaleup, broker = deployment.serve("scaleup", **env), deployment.serve("broker", **env)
        deployment.push("jobs", scaleup)
        job_id = quiet_job(deployment)
        deployment.publish("jobs", deployment.job_message(job_id))
        wait_for(lambda: deployment.instances(runner(job_id)), 60, f"an instance for job {job_id}")
        with deployment.compute.lock:
            instance = next(i for (_, name), i in deployment.compute.instances.items() if name == runner(job_id))
        script = next(item["value"] for item in instance["metadata"]["items"] if item["key"] == "startup-script")
        assert "jitr_identity_proof" in script and urllib.parse.quote(AUDIENCE, safe="") in script
        assert "ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(printf %s '" not in script
        wait_for(lambda: deployment.backend.load("runner", runner(job_id)).state == "launched", 60, "the launch")

        def ask(token: str) -> tuple[int, dict[str, Any]]:
            body = {"runner_name": runner(job_id), "provider": "gcp", "proof": {"token": token}}
            return post(broker.url, json.dumps(body).encode(), JSON)

        assert ask(_token(impostor, runner(job_id)))[0] == 401
        assert ask(_token(google, "jitr-linux-999-1"))[0] == 403  # a VM of the project, not this runner's
        assert get(broker.url)[0] == 405
        assert post(broker.url, b"x" * 20_000, JSON)[0] == 413

        status, answer = ask(_token(google, runner(job_id)))
        assert status == 200, answer
        agent = deployment.sim.agent_connect(answer["jit_config"])
        assert deployment.sim.agent_poll(agent.id, timeout=10).id == job_id
        status, answer = ask(_token(google, runner(job_id)))
        assert status == 410 and "jit_config" not in answer
    finally:
        keys.stop()
