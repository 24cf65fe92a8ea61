"""The AWS functions import only what their work needs (their cold start): the webhook neither the
other functions nor the GitHub client, the lifecycle function no GitHub client while no message
calls GitHub. A GitHub App key that cannot be read fails only the messages that call GitHub."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from conftest import FIXTURES
from jitr_core.messages import JobMessage, LifecycleMessage, encode
from jitr_core.webhook import parse_workflow_job

SECRET = "webhook-imports-secret"
PROBE = """
import json, sys
from jitr_functions import aws

class Context:
    aws_request_id = "imports"

answer = getattr(aws, sys.argv[1])(json.loads(sys.stdin.read()), Context())
prefixes = json.loads(sys.argv[2])
loaded = sorted({m for m in sys.modules for p in prefixes if m == p or m.startswith(p + ".")})
print(json.dumps({"answer": answer, "loaded": loaded}))
"""
GITHUB_CLIENT = ["jitr_github", "cryptography", "jwt", "requests", "urllib3"]


def invoke(function: str, event: dict[str, Any], state: Path, watched: list[str]) -> dict[str, Any]:
    """Invoke ``jitr_functions.aws.<function>`` in a fresh interpreter (a cold start, no GitHub App key
    configured): its answer, the outcomes it logged and which of the ``watched`` modules (and their
    submodules) it imported."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "JITR_PROVIDER": "embedded",
        "JITR_EMBEDDED_STATE_DIR": str(state),
        "JITR_SECRETS_WEBHOOK_SECRET": "env:WEBHOOK_SECRET",
        "WEBHOOK_SECRET": SECRET,
        "JITR_POOLS": json.dumps([{"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["m"]}]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, function, json.dumps(watched)],
        input=json.dumps(event),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]  # jitr's log lines
    result["outcomes"] = [line["outcome"] for line in lines if "outcome" in line]
    return result


def test_the_aws_webhook_answers_without_importing_the_other_functions_or_the_github_client(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "webhooks" / "workflow_job.queued.payload.json").read_bytes())
    data["workflow_job"]["labels"] = ["self-hosted", "linux"]  # a job of the pool below: it is enqueued
    data["repository"]["private"] = True
    body = json.dumps(data).encode()
    request = {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "headers": {
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }
    watched = [*GITHUB_CLIENT, "boto3", "botocore", "jitr_core.services.scaleup", "jitr_core.services.lifecycle",
               "jitr_core.services.scaledown", "jitr_core.services.rebalancer", "jitr_core.services.records",
               "jitr_core.github", "tomllib", "difflib"]  # fmt: skip

    result = invoke("webhook", request, tmp_path / "state", watched)

    answer = result["answer"]
    assert answer["statusCode"] == 202 and json.loads(answer["body"]) == {"queued": "jobs"}, result
    assert result["loaded"] == [], result


def test_the_aws_lifecycle_function_makes_no_github_client_for_messages_that_do_not_call_github(
    tmp_path: Path,
) -> None:
    payload = json.loads((FIXTURES / "webhooks" / "workflow_job.in_progress.payload.json").read_bytes())
    job = parse_workflow_job(payload)  # a job taken by a runner that is not jitr's
    records = [
        {"messageId": f"m-{action}", "receiptHandle": f"r-{action}", "eventSource": "aws:sqs",
         "body": encode(LifecycleMessage.from_job(replace(job, action=action), f"d-{action}", 1.0)).body}
        for action in ("in_progress", "completed")
    ]  # fmt: skip

    result = invoke("lifecycle", {"Records": records}, tmp_path / "state", GITHUB_CLIENT)

    assert result["answer"] == {"batchItemFailures": []}, result
    assert result["outcomes"] == ["not-our-runner", "not-our-runner"], result
    assert result["loaded"] == [], result


def test_an_unreadable_app_key_fails_only_the_messages_that_call_github(tmp_path: Path) -> None:
    payload = json.loads((FIXTURES / "webhooks" / "workflow_job.queued.payload.json").read_bytes())
    job = parse_workflow_job(payload)
    served = replace(job, labels=("self-hosted", "linux"), private=True)  # the pool's, in a private repository
    ignored = replace(served, job_id=job.job_id + 1, labels=("self-hosted", "gpu"))  # no pool serves it
    records = [
        {"messageId": f"m-{each.job_id}", "receiptHandle": f"r-{each.job_id}", "eventSource": "aws:sqs",
         "body": encode(JobMessage.from_job(each, "d-1", 1.0)).body}
        for each in (served, ignored)
    ]  # fmt: skip

    result = invoke("scaleup", {"Records": records}, tmp_path / "state", [])

    # the served job's JIT config needs the key: that message is retried, the other one is done
    assert result["answer"] == {"batchItemFailures": [{"itemIdentifier": f"m-{served.job_id}"}]}, result
    assert result["outcomes"] == ["ignored"], result
