"""Spot interruption warnings through the AWS lifecycle handler: real EventBridge events on SQS, moto, the simulator.

EventBridge puts the whole event as the SQS message body. The lifecycle function finds the
runner by the event's instance id, marks it; GitHub then fails the job (the instance is gone),
and a pool with ``rerun_on_interruption`` has it re-run once, the retry launched on-demand.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from conftest_aws import LABELS, WEBHOOK_SECRET, Deployment, FunctionUrl, LambdaContext, event
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]

_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")


def jit_config(user_data: str) -> str:
    match = _JIT_IN_SCRIPT.search(user_data)
    assert match is not None, "the user data carries no JIT config"
    return base64.b64decode(match.group(1)).decode()


def warning(instance_id: str) -> str:
    """The EventBridge event for ``instance_id``, as the SQS target receives it."""
    body = event("ec2-spot-interruption-warning.json")
    body["detail"]["instance-id"] = instance_id
    body["resources"] = [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"]
    return json.dumps(body)


@pytest.fixture
def opted_in(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    deployment.pool["rerun_on_interruption"] = True
    monkeypatch.setenv("JITR_POOLS", json.dumps([deployment.pool]))
    return deployment


def start_job(deployment: Deployment, front: FunctionUrl) -> tuple[int, dict[str, Any], int]:
    """Queue a job on GitHub and run it on a spot instance: (job id, instance, GitHub runner id)."""
    deployment.sim.set_webhook(front.url, WEBHOOK_SECRET)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    assert deployment.sim.drain_webhooks()
    assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
    [instance] = deployment.instances()
    assert instance["InstanceLifecycle"] == "spot"
    runner = deployment.sim.agent_connect(jit_config(deployment.user_data(instance["InstanceId"])))
    assert deployment.sim.agent_poll(runner.id, timeout=5).id == job_id
    assert deployment.sim.drain_webhooks()
    assert deployment.deliver(deployment.lifecycle_url, aws.lifecycle)["batchItemFailures"] == []
    return job_id, instance, runner.id


def test_a_warned_instance_whose_job_github_fails_is_rerun_on_demand(opted_in: Deployment) -> None:
    deployment = opted_in
    front = FunctionUrl(aws.webhook)
    try:
        job_id, instance, runner_id = start_job(deployment, front)
        body = warning(instance["InstanceId"])
        batch = deployment.bodies_event(body, body, queue="lifecycle")  # EventBridge delivers at least once
        assert aws.lifecycle(batch, LambdaContext()) == {"batchItemFailures": []}
        runner = get_app().backend.load("runner", deployment.runner_name(job_id))
        assert runner.state == "busy" and runner.data["interruption"] == "aws:interruption"

        deployment.sim.kill_runner(runner_id)  # the instance is reclaimed: GitHub fails the job
        assert deployment.sim.drain_webhooks()
        assert deployment.deliver(deployment.lifecycle_url, aws.lifecycle)["batchItemFailures"] == []
        run_id = deployment.sim.job(job_id).run_id
        [retry] = [j for j in deployment.sim.jobs() if j.run_id == run_id and j.id != job_id]
        assert retry.run_attempt == 2 and retry.status == "queued"

        assert deployment.sim.drain_webhooks()
        assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
    finally:
        front.close()
    relaunched = [i for i in deployment.instances() if i["tags"]["jitr-job"] == str(retry.id)]
    assert [i.get("InstanceLifecycle", "on-demand") for i in relaunched] == ["on-demand"]
    job = get_app().backend.load("job", str(job_id))
    assert job.data["rerun"] == "done"
    assert [e["event"] for e in job.data["timeline"]].count("interrupted") == 1


def test_a_warning_for_an_instance_jitr_does_not_know_is_acknowledged(deployment: Deployment) -> None:
    batch = deployment.bodies_event(warning("i-0aaaaaaaaaaaaaaaa"), queue="lifecycle")
    response = aws.lifecycle(batch, LambdaContext())
    assert response == {"batchItemFailures": []}
    assert deployment.take(deployment.lifecycle_dlq_url) == []


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(event("eventBridgeEvent.json")),  # a real event of another type
        warning("i-1234; rm -rf /"),
        json.dumps({**event("ec2-spot-interruption-warning.json"), "source": "attacker.ec2"}),
    ],
    ids=["state-change", "bad-instance-id", "foreign-source"],
)
def test_a_malformed_or_foreign_event_is_dead_lettered_with_its_reason(deployment: Deployment, body: str) -> None:
    batch = deployment.bodies_event(body, queue="lifecycle")
    assert aws.lifecycle(batch, LambdaContext()) == {"batchItemFailures": []}
    [letter] = deployment.take(deployment.lifecycle_dlq_url)
    assert letter["Body"] == body
    reason = letter["MessageAttributes"]["dead_letter_reason"]["StringValue"]
    assert "aws.ec2" in reason or "instance id" in reason
