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
import uuid
from pathlib import Path

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from gcp_support import (
    FIXTURES,
    LABELS,
    POOL,
    PUBLISHED,
    WEBHOOK_SECRET,
    Deployment,
    ce_headers,
    fixture,
    logged,
    quiet_job,
    runner,
    wait_for,
    with_data,
)
from jitr_core.model import LaunchRequest

pytest_plugins = ["conftest_gcp"]

_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")


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


def test_the_fixture_payloads_are_poison_dead_lettered_with_a_reason_and_acknowledged(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    for name in ("MessagePublishedData-binary-simple.json", "MessagePublishedData-text-testdata.json"):
        status, body = scaleup.post((FIXTURES / name).read_bytes())
        assert status == 200, body
        assert body["done"].startswith("dead-lettered: queue message is not JSON")
    letters = deployment.backend.dead_letters("jobs")
    assert sorted(m.body for m in letters) == ["\x01\x02\x03\x04", "test message 3"]


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


def test_a_protected_orphan_fails_the_scaledown_run_after_the_rest_is_done(deployment: Deployment) -> None:
    """GCE refuses to delete one of two orphans: the run deletes the other, answers 500 (Cloud
    Scheduler's failure, counted in function_errors) and deletes the first once it can."""
    orphans = [
        deployment.backend.launch_vm(
            LaunchRequest(
                runner_name=name,
                pool="linux",
                machine_type="e2-standard-2",
                placement="us-central1-a",
                spot=True,
                image=str(POOL["image"]),
                disk_gb=20,
                startup_script="#!/bin/sh\n",
                idempotency_token=uuid.uuid4().hex,
                max_lifetime_s=3600,
                labels={"jitr-runner": name, "jitr-pool": "linux", "jitr-job": "1", "jitr-attempt": "1"},
            )
        ).vm_id
        for name in (f"jitr-linux-{4444 + i}-1" for i in range(2))
    ]
    zone, _, protected = orphans[0].partition("/")
    other = orphans[1].partition("/")[2]
    deployment.compute.protect(zone, protected)
    server = deployment.serve("scaledown", JITR_GHOST_GRACE_S="0")

    status, body = server.post(b"", {"X-CloudScheduler-JobName": "jitr-scaledown"})

    assert status == 500, body
    assert (deployment.compute.instance_count(protected), deployment.compute.instance_count(other)) == (1, 0)
    [failed] = logged(server, "step failed; the next pass tries it again", vm_id=orphans[0])
    assert "protected against deletion" in failed["reason"]
    [incomplete] = logged(server, "scaledown run incomplete")
    assert incomplete["level"] == "ERROR" and "exception" not in incomplete, incomplete
    assert incomplete["report"]["errors"] == 1 and body["report"] == incomplete["report"], body
    counted = [r for r in server.records() if r.get("metric") == "function_errors"]
    assert [r["function"] for r in counted] == ["scaledown"]
    deployment.compute.protect(zone, protected, on=False)
    status, body = server.post(b"", {"X-CloudScheduler-JobName": "jitr-scaledown"})
    assert status == 200 and body["report"].get("orphan-vms") == 1, body
    assert deployment.compute.instance_count(protected) == 0


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
    deployment: Deployment, tmp_path: Path
) -> None:
    """requests and cryptography are not checked: google-auth loads them for the Pub/Sub publish itself."""
    data = json.loads((FIXTURES / "workflow_job.queued.payload.json").read_bytes())
    data["workflow_job"]["labels"] = LABELS  # a job of the deployment's pool, so the webhook publishes
    data["repository"]["private"] = True
    payload = tmp_path / "queued.json"
    payload.write_text(json.dumps(data))
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
