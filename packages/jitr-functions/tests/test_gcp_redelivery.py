"""Pub/Sub redelivery against the real Cloud Run handlers: failed launches, poison and duplicated
messages, and a scaleup instance killed between two steps, each still launching one instance."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from gcp_support import LABELS, WEBHOOK_SECRET, Deployment, logged, quiet_job, runner, wait_for, with_data
from jitr_gcp.config import gcp_config

pytest_plugins = ["conftest_gcp"]


def test_a_failed_launch_answers_503_and_pubsub_redelivers_until_it_launches(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    deployment.push("jobs", scaleup)
    deployment.compute.exhaust("us-central1-a", sync=True, status=503, code="resourceExhausted")
    job_id = quiet_job(deployment)

    deployment.publish("jobs", deployment.job_message(job_id))
    wait_for(lambda: logged(scaleup, "message will be retried"), 60, "a failed attempt")
    with deployment.compute.lock:
        deployment.compute.faults.clear()

    wait_for(lambda: deployment.instances(runner(job_id)), 60, "the redelivered message to launch")
    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]


def test_a_poison_message_is_dead_lettered_once_and_never_redelivered(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    deployment.push("jobs", scaleup)

    deployment.publish("jobs", b'{"v": 1, "type": "job"}', type="job")
    wait_for(lambda: logged(scaleup, "poison message dead-lettered"), 60, "the poison message")
    time.sleep(3)  # a redelivery would arrive within about a second on the emulator

    assert len(logged(scaleup, "poison message dead-lettered")) == 1
    assert [m.body for m in deployment.backend.dead_letters("jobs")] == ['{"v": 1, "type": "job"}']


def test_a_duplicated_message_launches_one_instance(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    deployment.push("jobs", scaleup)
    job_id = quiet_job(deployment)

    for _ in range(2):
        deployment.publish("jobs", deployment.job_message(job_id))
    wait_for(lambda: len(logged(scaleup, "scaleup", job_id=job_id)) >= 2, 60, "both copies handled")

    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]
    assert deployment.compute.instance_count(runner(job_id)) == 1
    assert len({insert["requestId"] for insert in deployment.compute.inserts}) == 1  # a repeat is idempotent


def test_a_duplicated_webhook_delivery_launches_one_instance(deployment: Deployment) -> None:
    """The webhook keeps no delivery records: it publishes both copies, and scaleup's claim on
    (job, attempt) launches once."""
    webhook, scaleup = deployment.serve("webhook"), deployment.serve("scaleup")
    deployment.push("jobs", scaleup)
    deployment.sim.set_webhook(webhook.url, WEBHOOK_SECRET)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    assert deployment.sim.drain_webhooks()
    [queued] = [d for d in deployment.sim.deliveries() if d.job_id == job_id and d.action == "queued"]
    assert queued.status_code == 202

    assert webhook.post(queued.body, dict(queued.headers)) == (202, {"queued": "jobs"})

    wait_for(lambda: len(logged(scaleup, "scaleup", job_id=job_id)) >= 2, 60, "both copies handled")
    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]
    assert deployment.compute.instance_count(runner(job_id)) == 1


CRASHING_MAIN = '''"""scaleup whose first run dies right after one step, as a killed instance would."""

import os
from pathlib import Path

from jitr_functions.app import get_app
from jitr_functions.gcp import scaleup

__all__ = ["scaleup"]
MARKER = Path(os.environ["CRASH_MARKER"])


def _die(step: str) -> None:
    if step == os.environ["CRASH_STEP"] and not MARKER.exists():
        MARKER.touch()
        os._exit(70)


get_app().scaleup.checkpoint = _die
'''


@pytest.mark.parametrize("step", ["claimed", "launched"])
def test_a_crash_after_a_step_then_redelivery_launches_one_instance(
    deployment: Deployment, tmp_path: Path, step: str
) -> None:
    source = tmp_path / "crashing" / "main.py"
    source.parent.mkdir()
    source.write_text(CRASHING_MAIN)
    scaleup = deployment.serve("scaleup", source, CRASH_MARKER=str(tmp_path / "crashed"), CRASH_STEP=step)
    deployment.push("jobs", scaleup)
    job_id = quiet_job(deployment)

    deployment.publish("jobs", deployment.job_message(job_id))
    # the worker process dies mid-request; a fresh one takes over and Pub/Sub redelivers the message
    wait_for((tmp_path / "crashed").exists, 60, f"the crash after {step!r}")

    wait_for(lambda: deployment.backend.load("job", str(job_id)).data.get("launched_runner"), 60, "a launch")
    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]
    assert deployment.compute.instance_count(runner(job_id)) == 1


def test_a_message_not_due_for_long_is_published_again_before_its_last_delivery(deployment: Deployment) -> None:
    """A push delivery long before its message is due (a job waiting out a GitHub rate limit) is
    answered 503 for Pub/Sub to redeliver; each counts against the dead-letter policy, so the
    next-to-last allowed one (policy: 5) is published again instead, due at the same time with a
    fresh count, and acknowledged: a long wait never dead-letters a message."""
    from google.cloud import pubsub_v1

    scaleup = deployment.serve("scaleup")
    job_id = quiet_job(deployment)
    body = deployment.job_message(job_id)
    due = f"{time.time() + 600:.3f}"

    def push(attempt: int) -> tuple[int, dict[str, object]]:
        message = {"messageId": f"m-{attempt}", "attributes": {"type": "job", "not_before": due}}
        envelope = with_data({"message": message, "subscription": "projects/p/subscriptions/s"}, body)
        return scaleup.post({**envelope, "deliveryAttempt": attempt})

    assert [push(attempt)[0] for attempt in (1, 2, 3)] == [503, 503, 503]
    status, answer = push(4)

    assert status == 200 and "published again" in str(answer["deferred"]), answer
    subscription = gcp_config(deployment.settings).queue("jobs").subscription
    pulled = pubsub_v1.SubscriberClient().pull(request={"subscription": subscription, "max_messages": 10}, timeout=30)
    [copy] = [r.message for r in pulled.received_messages if r.message.data == body]
    assert copy.attributes["type"] == "job" and abs(float(copy.attributes["not_before"]) - float(due)) <= 2
    assert len(logged(scaleup, "message not due yet; left for redelivery")) == 3
    assert not deployment.instances(runner(job_id)) and not deployment.backend.dead_letters("jobs")


def test_a_message_not_due_waits_one_backoff_before_it_is_published_again(deployment: Deployment) -> None:
    """With ``max_deliveries`` set below Pub/Sub's least policy (5), a copy published again is
    still answered 503 on its first delivery: published again at once, each copy would come
    straight back, over and over until due."""
    scaleup = deployment.serve("scaleup", JITR_GCP_MAX_DELIVERIES="1")
    job_id = quiet_job(deployment)
    body = deployment.job_message(job_id)
    message = {"messageId": "m-1", "attributes": {"type": "job", "not_before": f"{time.time() + 600:.3f}"}}
    envelope = with_data({"message": message, "subscription": "projects/p/subscriptions/s"}, body)

    assert scaleup.post({**envelope, "deliveryAttempt": 1})[0] == 503
    assert scaleup.post({**envelope, "deliveryAttempt": 2})[0] == 200
