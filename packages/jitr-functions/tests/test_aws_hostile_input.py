"""Hostile requests to the Lambda handlers against moto: a clear 4xx or an immediate dead letter."""

from __future__ import annotations

import json
import uuid

from conftest_aws import Deployment, LambdaContext, event, queued_payload, signed
from jitr_functions import aws

pytest_plugins = ["conftest_aws"]


def test_the_webhook_answers_hostile_deliveries_with_4xx(deployment: Deployment) -> None:
    request = event("lambdaFunctionUrlEvent.json")
    non_ascii = signed(request, queued_payload(), str(uuid.uuid4()))
    non_ascii["headers"]["x-hub-signature-256"] = "sha256=" + "\u00e9" * 64
    nested = signed(request, b"[" * 100_000, str(uuid.uuid4()))
    huge_id = json.loads(queued_payload())
    huge_id["workflow_job"]["id"] = 2**70

    answers = {
        "non-ascii signature": aws.webhook(non_ascii, LambdaContext()),
        "deeply nested": aws.webhook(nested, LambdaContext()),
        "huge id": aws.webhook(signed(request, json.dumps(huge_id).encode(), str(uuid.uuid4())), LambdaContext()),
    }

    assert {k: v["statusCode"] for k, v in answers.items()} == {
        "non-ascii signature": 401,
        "deeply nested": 400,
        "huge id": 400,
    }
    assert "workflow_job.id must be int" in json.loads(answers["huge id"]["body"])["error"]
    assert deployment.take(deployment.jobs_url) == []


def test_a_deeply_nested_queue_message_is_dead_lettered_at_once(deployment: Deployment) -> None:
    batch = deployment.bodies_event("[" * 100_000)

    assert aws.scaleup(batch, LambdaContext()) == {"batchItemFailures": []}

    letters = deployment.take(deployment.jobs_dlq_url)
    assert len(letters) == 1
    assert "too deeply" in letters[0]["MessageAttributes"]["dead_letter_reason"]["StringValue"]
