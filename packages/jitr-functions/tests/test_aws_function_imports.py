"""The AWS webhook function imports only what answering a delivery needs (its cold start)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES

SECRET = "webhook-imports-secret"
PROBE = """
import json, sys
from jitr_functions import aws

class Context:
    aws_request_id = "imports"

answer = aws.webhook(json.loads(sys.stdin.read()), Context())
prefixes = ("jitr_github", "cryptography", "jwt", "requests", "urllib3", "boto3", "botocore",
            "jitr_core.services.scaleup", "jitr_core.services.lifecycle", "jitr_core.services.scaledown",
            "jitr_core.services.rebalancer", "jitr_core.services.records", "jitr_core.github",
            "tomllib", "difflib")
loaded = sorted({m for m in sys.modules for p in prefixes if m == p or m.startswith(p + ".")})
print(json.dumps({"status": answer["statusCode"], "body": json.loads(answer["body"]), "loaded": loaded}))
"""


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
    env = {
        "PATH": os.environ.get("PATH", ""),
        "JITR_PROVIDER": "embedded",
        "JITR_EMBEDDED_STATE_DIR": str(tmp_path / "state"),
        "JITR_SECRETS_WEBHOOK_SECRET": "env:WEBHOOK_SECRET",
        "WEBHOOK_SECRET": SECRET,
        "JITR_POOLS": json.dumps([{"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["m"]}]),
    }

    done = subprocess.run(
        [sys.executable, "-c", PROBE], input=json.dumps(request), env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 202 and result["body"] == {"queued": "jobs"}, (result, done.stderr)
    assert result["loaded"] == [], result
