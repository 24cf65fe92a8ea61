"""GCE preemptions through the GCP lifecycle target: the log sink's LogEntry as Pub/Sub data, on the emulators.

The sink publishes the ``compute.instances.preempted`` LogEntry to the lifecycle topic; the
push subscription delivers it to the lifecycle function, which marks the runner named in it.
GitHub then fails the job and a pool with ``rerun_on_interruption`` has it re-run, on a
standard (not spot) VM.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from gcp_support import LABELS, POOL, WEBHOOK_SECRET, Deployment, fixture, runner, wait_for

pytest_plugins = ["conftest_gcp"]

_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")
OPTED_IN = json.dumps([{**POOL, "rerun_on_interruption": True}])


def preempted(instance: str, method: str = "compute.instances.preempted") -> bytes:
    entry = fixture("gce-preempted-log-entry.json")
    entry["protoPayload"]["resourceName"] = f"projects/jitr-test/zones/us-central1-a/instances/{instance}"
    entry["protoPayload"]["methodName"] = method
    return json.dumps(entry).encode()


def instance_of(deployment: Deployment, name: str) -> dict[str, Any]:
    with deployment.compute.lock:
        return next(i for (_, n), i in deployment.compute.instances.items() if n == name)


def test_a_preempted_runners_failed_job_is_rerun_on_a_standard_vm(deployment: Deployment) -> None:
    targets = ("webhook", "scaleup", "lifecycle")
    webhook, scaleup, lifecycle = (deployment.serve(t, JITR_POOLS=OPTED_IN) for t in targets)
    deployment.push("jobs", scaleup)
    deployment.push("lifecycle", lifecycle)
    deployment.sim.set_webhook(webhook.url, WEBHOOK_SECRET)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    wait_for(lambda: deployment.instances(runner(job_id)), 60, f"an instance for job {job_id}")
    first = instance_of(deployment, runner(job_id))
    assert first["scheduling"]["provisioningModel"] == "SPOT"
    script = next(item["value"] for item in first["metadata"]["items"] if item["key"] == "startup-script")
    match = _JIT_IN_SCRIPT.search(script)
    assert match is not None
    agent = deployment.sim.agent_connect(base64.b64decode(match.group(1)).decode())
    assert deployment.sim.agent_poll(agent.id, timeout=10) is not None
    wait_for(lambda: deployment.backend.load("job", str(job_id)).state == "running", 60, "the job running")

    notice = preempted(runner(job_id))
    deployment.publish("lifecycle", notice)
    deployment.publish("lifecycle", notice)  # a sink delivers at least once
    wait_for(
        lambda: deployment.backend.load("runner", runner(job_id)).data.get("interruption") == "gcp:preempted",
        60,
        "the runner marked",
    )
    deployment.sim.kill_runner(agent.id)  # the VM stops: GitHub fails the job

    run_id = deployment.sim.job(job_id).run_id
    wait_for(lambda: len([j for j in deployment.sim.jobs() if j.run_id == run_id]) == 2, 60, "the re-run")
    [retry] = [j for j in deployment.sim.jobs() if j.run_id == run_id and j.id != job_id]
    assert retry.run_attempt == 2
    wait_for(lambda: deployment.instances(runner(retry.id)), 60, f"an instance for the re-run {retry.id}")
    assert instance_of(deployment, runner(retry.id))["scheduling"]["provisioningModel"] == "STANDARD"
    job = deployment.backend.load("job", str(job_id))
    assert job.data["rerun"] == "done"
    assert [e["event"] for e in job.data["timeline"]].count("interrupted") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (preempted("jitr-linux-1-1", method="v1.compute.instances.delete"), "compute.instances.preempted"),
        (preempted("../../etc"), "names no instance"),
    ],
    ids=["another-audit-event", "no-instance-name"],
)
def test_a_foreign_or_malformed_log_entry_is_dead_lettered_with_its_reason(
    deployment: Deployment, body: bytes, reason: str
) -> None:
    lifecycle = deployment.serve("lifecycle")
    envelope = {"message": {"data": base64.b64encode(body).decode(), "messageId": "1"}, "subscription": "s"}

    status, answer = lifecycle.post(envelope)

    assert status == 200, answer
    [letter] = deployment.backend.dead_letters("lifecycle")
    assert letter.body == body.decode()
    assert reason in letter.attributes.get("dead_letter_reason", "")


def test_a_preemption_of_a_vm_jitr_does_not_know_is_acknowledged(deployment: Deployment) -> None:
    lifecycle = deployment.serve("lifecycle")
    body = preempted("jitr-linux-424242-1")
    status, answer = lifecycle.post({"message": {"data": base64.b64encode(body).decode(), "messageId": "2"}})
    assert status == 200, answer
    assert deployment.backend.dead_letters("lifecycle") == []
