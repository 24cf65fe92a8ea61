"""The Cloud Run targets served by functions-framework from a ``jitr bundle gcp`` directory, on the
Pub/Sub and Firestore emulators, the GCE and Secret Manager fakes and the GitHub simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

import jitr_gcp.plugin
from gcp_support import FIXTURES, WEBHOOK_SECRET, Deployment, FunctionServer, fixture, wait_for

pytest_plugins = ["conftest_gcp"]

LABELS = ["self-hosted", "linux", "x64"]
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")
needs_dead_letter_hook = pytest.mark.xfail(
    not hasattr(jitr_gcp.plugin, "jitr_dead_letter"),
    strict=True,
    reason="jitr-gcp does not implement jitr_dead_letter yet, so a poison message cannot be dead-lettered",
)


def runner(job_id: int) -> str:
    return f"jitr-linux-{job_id}-1"


def logged(server: FunctionServer, message: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        r for r in server.records() if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())
    ]


def quiet_job(deployment: Deployment) -> int:
    """A job queued in the simulator without a webhook, for tests that publish its message themselves."""
    deployment.sim.set_webhook(None, None)
    return deployment.sim.queue_job("octo-org/api", LABELS)


def with_data(event: dict[str, Any], body: bytes) -> dict[str, Any]:
    """A copy of a MessagePublishedData (or a CloudEvent carrying one) with ``message.data`` replaced."""
    event = json.loads(json.dumps(event))
    data = event["data"] if "specversion" in event else event
    data["message"]["data"] = base64.b64encode(body).decode()
    return event


def ce_headers(event_id: str = "ce-1") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-type": PUBLISHED,
        "ce-id": event_id,
        "ce-source": "//pubsub.googleapis.com/projects/jitr-test/topics/jitr-jobs",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }


def test_webhook_pubsub_push_scaleup_gce_insert_and_lifecycle_end_to_end(deployment: Deployment) -> None:
    webhook, scaleup, lifecycle = (deployment.serve(t) for t in ("webhook", "scaleup", "lifecycle"))
    deployment.push("jobs", scaleup)
    deployment.push("lifecycle", lifecycle)
    deployment.sim.set_webhook(webhook.url, WEBHOOK_SECRET)

    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    wait_for(lambda: deployment.instances(runner(job_id)), 60, f"an instance for job {job_id}")

    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]
    assert [d.status_code for d in deployment.sim.deliveries()] == [202]
    # the VM boots: its startup script carries the JIT config the runner starts with
    with deployment.compute.lock:
        instance = next(i for (_, name), i in deployment.compute.instances.items() if name == runner(job_id))
    script = next(item["value"] for item in instance["metadata"]["items"] if item["key"] == "startup-script")
    match = _JIT_IN_SCRIPT.search(script)
    assert match is not None
    agent = deployment.sim.agent_connect(base64.b64decode(match.group(1)).decode())
    assert deployment.sim.agent_poll(agent.id, timeout=10) is not None
    wait_for(lambda: deployment.backend.load("job", str(job_id)).state == "running", 60, "the job running")
    deployment.sim.agent_finish(agent.id)
    wait_for(lambda: deployment.backend.load("job", str(job_id)).state == "completed", 60, "the job completed")
    assert deployment.sim.drain_webhooks()
    assert [d.status_code for d in deployment.sim.deliveries()] == [202, 202, 202]
    wait_for(lambda: len(logged(lifecycle, "lifecycle", job_id=job_id)) == 2, 60, "both lifecycle log lines")
    outcomes = logged(lifecycle, "lifecycle", job_id=job_id)
    assert len(outcomes) == 2 and all("subscription" in r and "event_id" in r for r in outcomes)


@pytest.mark.parametrize(
    "name,mode",
    [
        ("MessagePublishedData-structured.json", "structured"),
        ("MessagePublishedData-binary-testdata.json", "binary"),
        ("MessagePublishedData-binary-simple.json", "push"),
        ("MessagePublishedData-text-testdata.json", "push"),
    ],
)
def test_each_delivery_shape_carries_a_job_to_a_launch(deployment: Deployment, name: str, mode: str) -> None:
    scaleup = deployment.serve("scaleup")
    job_id = quiet_job(deployment)
    event = with_data(fixture(name), deployment.job_message(job_id))
    headers = {"binary": ce_headers("ce-binary"), "structured": {"Content-Type": "application/cloudevents+json"}}

    status, body = scaleup.post(event, headers.get(mode))

    assert status == 200, body
    assert body["done"].startswith("launched")
    assert deployment.instances(f"jitr-linux-{job_id}-") == [runner(job_id)]
    line = logged(scaleup, "scaleup", job_id=job_id)[0]
    assert line["event_id"] == {"structured": "3103425958877813", "binary": "ce-binary"}.get(mode, "message-id")
    if mode == "binary":
        assert line["trace"] == "0af7651916cd43dd8448eb211c80319c"
        assert line["logging.googleapis.com/trace"] == "projects/jitr-test/traces/0af7651916cd43dd8448eb211c80319c"


@needs_dead_letter_hook
def test_the_fixture_payloads_are_poison_dead_lettered_with_a_reason_and_acknowledged(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    for name in ("MessagePublishedData-binary-simple.json", "MessagePublishedData-text-testdata.json"):
        status, body = scaleup.post((FIXTURES / name).read_bytes())
        assert status == 200, body
        assert body["done"].startswith("dead-lettered: queue message is not JSON")
    letters = deployment.backend.dead_letters("jobs")
    assert sorted(m.body for m in letters) == ["\x01\x02\x03\x04", "test message 3"]


@needs_dead_letter_hook
@pytest.mark.parametrize(
    "raw,headers,reason",
    [
        (b"{}", {**ce_headers(), "ce-type": "google.cloud.storage.object.v1.finalized"}, "CloudEvent type must be"),
        (json.dumps({"message": {"data": "%%not base64%%", "messageId": "1"}}).encode(), {}, "not base64"),
        (
            json.dumps({"specversion": "1.0", "type": PUBLISHED, "id": "x", "data": {"subscription": "s"}}).encode(),
            {},
            "lacks a 'message'",
        ),
        (b"\xff\xfe not json", ce_headers(), "not JSON"),
    ],
)
def test_a_malformed_cloudevent_is_dead_lettered_with_its_reason_and_acknowledged(
    deployment: Deployment, raw: bytes, headers: dict[str, str], reason: str
) -> None:
    scaleup = deployment.serve("scaleup")

    status, body = scaleup.post(raw, headers)

    assert status == 200, body
    assert reason in body["dead_lettered"]
    assert reason in logged(scaleup, "malformed delivery dead-lettered")[0]["reason"]
    assert [m.body for m in deployment.backend.dead_letters("jobs")] == [raw.decode(errors="replace")]


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


@needs_dead_letter_hook
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


@pytest.mark.parametrize("target", ["scaledown", "rebalancer"])
def test_a_periodic_run_answers_a_scheduler_call_over_http_and_over_pubsub(deployment: Deployment, target: str) -> None:
    server = deployment.serve(target)

    status, body = server.post(b"", {"X-CloudScheduler-JobName": f"jitr-{target}"})
    assert status == 200 and isinstance(body["report"], dict), body
    status, body = server.post(
        fixture("MessagePublishedData-structured.json"), {"Content-Type": "application/cloudevents+json"}
    )
    assert status == 200 and isinstance(body["report"], dict), body

    runs = logged(server, f"{target} run")
    assert [r.get("scheduler_job") for r in runs] == [f"jitr-{target}", None]
    assert runs[1]["event_id"] == "3103425958877813"


IMPORT_PROBE = """
import json, sys, time
from functions_framework import create_app
app = create_app("webhook", sys.argv[1])
body = open(sys.argv[2], "rb").read()
started = time.perf_counter()
answer = app.test_client().post("/", data=body, headers=json.loads(sys.argv[3]))
heavy = ["google.cloud.compute_v1", "jitr_github", "jwt"]
print(json.dumps({"status": answer.status_code, "body": answer.get_json(), "ms": (time.perf_counter() - started) * 1000,
                  "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_the_webhook_answers_a_real_payload_without_loading_compute_or_the_github_client(
    deployment: Deployment,
) -> None:
    """requests and cryptography are not checked: google-auth loads them for the Pub/Sub publish itself."""
    payload = FIXTURES / "workflow_job.queued.payload.json"
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), payload.read_bytes(), hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }

    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, str(deployment.bundle / "main.py"), str(payload), json.dumps(headers)],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 202, result
    assert result["loaded"] == [], result
