"""Webhook deliveries look, sign and fail like GitHub's, and can be redelivered."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid

from github_support import GITHUB, RawApp, SimFactory, WebhookReceiver, assert_webhook_conforms
from jitr_github.simulator import GitHubSimulator

SECRET = "webhook-secret-for-the-tests-7f3a"
EXAMPLES = GITHUB / "webhooks" / "examples" / "api.github.com" / "workflow_job"


def _run_one_job(sim: GitHubSimulator, conclusion: str = "success") -> int:
    app = RawApp(sim)
    installation = app.call("GET", "/orgs/{org}/installation", 200, app.jwt(), org="octo-org")["id"]
    config = app.register(app.token(installation), "r1", ["self-hosted", "linux"], "octo-org", "app")
    job = sim.queue_job("octo-org/app", ["self-hosted", "linux"])
    runner = sim.agent_connect(config["encoded_jit_config"])
    sim.agent_finish(runner.id, conclusion)
    return job


def test_deliveries_are_signed_over_the_exact_bytes_with_github_headers(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.set_webhook(receiver.url, SECRET)
    installation = sim.add_installation("octo-org", repos=["app"])
    job = _run_one_job(sim)
    received = receiver.wait_for(3)
    assert [r.payload()["action"] for r in received] == ["queued", "in_progress", "completed"]
    for delivery in received:
        headers = delivery.headers
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
        assert headers["X-GitHub-Event"] == "workflow_job"
        assert uuid.UUID(headers["X-GitHub-Delivery"]).version == 4
        assert headers["X-GitHub-Hook-ID"].isdigit()
        assert headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
        assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(sim.app_id)
        assert headers["User-Agent"].startswith("GitHub-Hookshot/")
        assert headers["Content-Type"] == "application/json"
        payload = delivery.payload()
        assert payload["installation"]["id"] == installation
        assert payload["workflow_job"]["id"] == job
        assert_webhook_conforms(payload)
    assert len({r.headers["X-GitHub-Delivery"] for r in received}) == 3
    assert sim.drain_webhooks()
    recorded = {d.guid: d for d in sim.deliveries()}
    for delivery in received:
        record = recorded[delivery.headers["X-GitHub-Delivery"]]
        assert (record.ok, record.body, record.payload()) == (True, delivery.body, delivery.payload())
    in_progress = received[1].payload()["workflow_job"]
    assert (in_progress["runner_name"], in_progress["status"]) == ("r1", "in_progress")
    completed = received[2].payload()["workflow_job"]
    assert (completed["status"], completed["conclusion"]) == ("completed", "success")


def test_payloads_have_the_keys_of_real_deliveries(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    github_simulator.set_webhook(receiver.url, SECRET)
    github_simulator.add_installation("octo-org", repos=["app"])
    _run_one_job(github_simulator)
    received = {r.payload()["action"]: r.payload() for r in receiver.wait_for(3)}
    for action, example_file in [("queued", "queued"), ("in_progress", "in_progress")]:
        example = json.loads((EXAMPLES / f"{example_file}.payload.json").read_text())
        ours = received[action]
        assert set(ours["workflow_job"]) == set(example["workflow_job"])
        assert set(ours["repository"]) == set(example["repository"])
        assert set(example) - {"deployment"} <= set(ours)


def test_a_cancelled_queued_job_is_delivered_completed_without_runner(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.set_webhook(receiver.url, SECRET)
    sim.add_installation("octo-org", repos=["app"])
    sim.cancel_job(sim.queue_job("octo-org/app", ["self-hosted"]))
    completed = receiver.wait_for(2)[1].payload()
    assert completed["action"] == "completed"
    assert (completed["workflow_job"]["conclusion"], completed["workflow_job"]["runner_name"]) == ("cancelled", None)
    assert_webhook_conforms(completed)


def test_failed_deliveries_are_recorded_and_redelivered_with_the_same_guid(
    github_simulator: GitHubSimulator, receiver: WebhookReceiver
) -> None:
    sim = github_simulator
    sim.set_webhook(receiver.url, SECRET)
    sim.add_installation("octo-org", repos=["app"])
    receiver.status = 503
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    (failed,) = sim.deliveries()
    assert (failed.ok, failed.status_code, failed.status, failed.redelivery) == (
        False,
        503,
        "Invalid HTTP Response: 503",
        False,
    )

    receiver.status = 202
    app = RawApp(sim)
    app.call("POST", "/app/hook/deliveries/{delivery_id}/attempts", 202, app.jwt(), delivery_id=failed.id)
    assert sim.drain_webhooks()
    again, first = sim.deliveries()
    assert first == failed
    assert (again.guid, again.redelivery, again.ok) == (failed.guid, True, True)
    bodies = [r.body for r in receiver.wait_for(2)]
    assert bodies[0] == bodies[1], "a redelivery resends the same bytes"
    assert [r.headers["X-GitHub-Delivery"] for r in receiver.received] == [failed.guid, failed.guid]


def test_an_unreachable_receiver_is_a_failed_delivery(make_sim: SimFactory) -> None:
    sim = make_sim(webhook_url="http://127.0.0.1:9/unreachable", webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    (failed,) = sim.deliveries()
    assert (failed.ok, failed.status_code) == (False, 0)


def test_without_a_webhook_url_nothing_is_delivered(github_simulator: GitHubSimulator) -> None:
    github_simulator.add_installation("octo-org", repos=["app"])
    github_simulator.queue_job("octo-org/app", ["self-hosted"])
    assert github_simulator.drain_webhooks()
    assert github_simulator.deliveries() == []


def test_queueing_does_not_wait_for_the_receiver(github_simulator: GitHubSimulator, receiver: WebhookReceiver) -> None:
    sim = github_simulator
    sim.set_webhook(receiver.url, SECRET)
    sim.add_installation("octo-org", repos=["app"])
    receiver.gate = threading.Event()  # the receiver answers nothing until the gate opens
    jobs = [sim.queue_job("octo-org/app", ["self-hosted"]) for _ in range(50)]
    assert len(set(jobs)) == 50, "every queue_job returned while no delivery could finish"
    receiver.gate.set()
    assert sim.drain_webhooks()
    assert len(receiver.wait_for(50)) == 50
    assert all(d.ok for d in sim.deliveries())
