"""Caps on DynamoDB through the Lambda handlers: a worker that dies holding a counted claim."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_aws import Deployment, LambdaContext, event
from jitr_aws.counts import counter_key
from jitr_core.testing.environment import wait_until
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]


def _counted(deployment: Deployment, pool: str | None) -> int:
    table = deployment.env["JITR_AWS_TABLE"]
    answer = deployment.client("dynamodb").get_item(TableName=table, Key=counter_key(pool), ConsistentRead=True)
    item = answer.get("Item")
    return int(item["n"]["N"]) if item else 0


def _queue_job(deployment: Deployment) -> int:
    deployment.sim.set_webhook(None, None)
    return deployment.sim.queue_job("octo-org/api", ["self-hosted", "linux", "x64"])


def test_a_worker_killed_after_its_counted_claim_blocks_the_cap_only_until_scaledown(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITR_POOLS", json.dumps([{**deployment.pool, "max_runners": 1}]))
    monkeypatch.setenv("JITR_CLAIM_TIMEOUT_S", "1")
    crashes: list[str] = []

    def crash_once(step: str) -> None:
        if step == "claimed" and not crashes:
            crashes.append(step)
            raise RuntimeError("the worker died holding its claim")

    get_app().scaleup.checkpoint = crash_once
    dead, waiting = _queue_job(deployment), _queue_job(deployment)
    pool = deployment.pool["name"]

    crashed = aws.scaleup(deployment.bodies_event(deployment.job_message(dead)), LambdaContext())
    assert len(crashed["batchItemFailures"]) == 1 and crashes == ["claimed"]
    assert (_counted(deployment, pool), _counted(deployment, None)) == (1, 1)
    assert aws.scaleup(deployment.bodies_event(deployment.job_message(waiting)), LambdaContext()) == {
        "batchItemFailures": []
    }
    assert deployment.instances() == []  # deferred by the cap the dead claim holds

    def released() -> dict[str, Any] | None:
        report: dict[str, Any] = aws.scaledown(event("eventBridgeEvent.json"), LambdaContext())
        return report if report.get("abandoned-claims") else None

    wait_until(released, 60, "scale-down to release the dead claim")
    assert (_counted(deployment, pool), _counted(deployment, None)) == (0, 0)
    deployment.sqs.send_message(QueueUrl=deployment.jobs_url, MessageBody=deployment.job_message(waiting))
    while deployment.deliver(deployment.jobs_url, aws.scaleup)["records"]:  # the re-enqueued job, then the waiting one
        pass
    [instance] = deployment.instances()  # the slot went to one of them, and only one
    assert instance["tags"]["jitr-job"] in (str(dead), str(waiting))
    assert (_counted(deployment, pool), _counted(deployment, None)) == (1, 1)
