"""Hostile requests to the Cloud Run functions under functions-framework: a clear 4xx or an
immediate dead letter, never a 500 or a retry."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from gcp_support import WEBHOOK_SECRET, Deployment, ce_headers, logged, with_data

pytest_plugins = ["conftest_gcp"]


def delivery_headers(body: bytes, signature: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": "d6d1a52c-0000-4000-8000-000000000001",
        "X-Hub-Signature-256": signature
        or "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def test_the_webhook_answers_hostile_deliveries_with_4xx(deployment: Deployment) -> None:
    webhook = deployment.serve("webhook", JITR_MAX_BODY_BYTES="2048")
    nested = b"[" * 100_000

    answers = {
        "non-ascii signature": webhook.post(b"{}", delivery_headers(b"{}", "sha256=" + "\u00e9" * 64))[0],
        "deeply nested": webhook.post(nested[:2000], delivery_headers(nested[:2000]))[0],
        "oversized": webhook.post(b" " * 4096, delivery_headers(b" " * 4096))[0],
    }

    assert answers == {"non-ascii signature": 401, "deeply nested": 400, "oversized": 413}
    assert "Traceback" not in webhook.log_text()


def test_a_deeply_nested_queue_message_is_dead_lettered_at_once(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    nested = b"[" * 100_000

    status, body = scaleup.post(nested, ce_headers())
    assert (status, "too deeply" in body.get("dead_lettered", "")) == (200, True), body
    envelope = with_data({"message": {"messageId": "7"}, "subscription": "projects/p/subscriptions/s"}, nested)
    status, body = scaleup.post(json.dumps(envelope).encode())
    assert status == 200 and "too deeply" in body["done"], body

    assert len(deployment.backend.dead_letters("jobs")) == 2
    assert logged(scaleup, "poison message dead-lettered")
