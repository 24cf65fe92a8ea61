"""Lambda cold start: process start → first webhook answered, from the unpacked ``jitr bundle aws`` zip.

Compared with the floor of any Python function that sends one SQS message with the runtime's boto3
(``import boto3; boto3.client("sqs").send_message(...)``), against the same moto server in the same
run. The zip is built twice, with bytecode and with ``--no-compile``; the three kinds of run are
interleaved and each one's median is taken. Every run is a fresh interpreter of the bundle's
Python (``python3.12``, else ``python3.13``) started with ``-I -S -B``: the path holds only the
bundle and a copy of the runtime's boto3 compiled for that Python (as Lambda's runtime ships it),
and nothing writes bytecode, as nothing can in Lambda's read-only ``/var/task``.

``python benchmarks/cold_start.py [--quick]`` prints the JSON of :func:`targets`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jitr_aws.testing import FAKE_CREDENTIALS, moto_server

HERE = Path(__file__).parent
_PAYLOAD = json.loads((HERE / "queued.payload.json").read_bytes())
_PAYLOAD["workflow_job"]["labels"] = ["self-hosted", "linux", "x64"]  # a job the pool serves: it is enqueued
_PAYLOAD["repository"]["private"] = True
PAYLOAD = json.dumps(_PAYLOAD).encode()
SECRET = "bench-webhook-secret"  # noqa: S105 - a benchmark fixture, not a credential
REGION = "eu-west-1"
TARGET = 1.25
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
CREDENTIALS = {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": REGION}
FLOOR = """
import sys
sys.path.append(sys.argv[1])
import boto3
boto3.client("sqs", endpoint_url=sys.argv[2]).send_message(QueueUrl=sys.argv[3], MessageBody="floor")
print("done", flush=True)
"""
HANDLER = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.append(sys.argv[2])
from jitr_functions import aws
class Context:
    aws_request_id = "cold-start"
answer = aws.webhook(json.loads(sys.stdin.readline()), Context())
print(answer["statusCode"], flush=True)
print(answer["body"], file=sys.stderr)
"""


def targets(quick: bool = False, bundles: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{"lambda_cold_start_vs_floor": {...}}``: the bundle's cold start over the floor's, with and without bytecode.

    ``bundles``: a directory to keep the two zips in and reuse them from (by default they are built anew).
    """
    rounds = 5 if quick else 15
    python = _python()
    if python is None:
        return {
            "lambda_cold_start_vs_floor": {
                "value": None,
                "target": TARGET,
                "met": False,
                "skipped": "no python3.12 or python3.13 on the PATH",
            }
        }
    version, interpreter = python
    with tempfile.TemporaryDirectory(prefix="jitr-cold-") as tmp, moto_server() as endpoint:
        root = Path(tmp)
        runtime = _runtime(root / "runtime", interpreter)
        zips = bundles or root
        unpacked = {
            "bytecode": _bundle(zips / f"bytecode-{version}.zip", root / "bytecode", version, []),
            "source": _bundle(zips / f"source-{version}.zip", root / "source", version, ["--no-compile"]),
        }
        env, queue_url = _deployment(endpoint)
        runs: dict[str, Callable[[], float]] = {
            "floor": lambda: _time(
                [interpreter, "-I", "-S", "-B", "-c", FLOOR, str(runtime), endpoint, queue_url], env, None, "done"
            ),
            **{
                kind: (
                    lambda path=path: _time(
                        [interpreter, "-I", "-S", "-B", "-c", HANDLER, str(path), str(runtime)], env, _event(), "202"
                    )
                )
                for kind, path in unpacked.items()
            },
        }
        for run in runs.values():  # once each untimed: the moto server's first requests, the page cache
            run()
        samples: dict[str, list[float]] = {kind: [] for kind in runs}
        order = list(runs)
        for i in range(rounds):
            for kind in order[i % 3 :] + order[: i % 3]:  # interleaved, and each kind in each position
                samples[kind].append(runs[kind]())
        zipped_mb = {kind: round((zips / f"{kind}-{version}.zip").stat().st_size / 2**20, 2) for kind in unpacked}
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    ratio = medians["bytecode"] / medians["floor"]
    return {
        "lambda_cold_start_vs_floor": {
            "value": round(ratio, 3),
            "floor": round(medians["floor"], 3),
            "target": TARGET,
            "met": ratio <= TARGET,
            "without_bytecode": round(medians["source"] / medians["floor"], 3),
            "seconds": {kind: round(value, 3) for kind, value in medians.items()},
            "zipped_mb": zipped_mb,
            "python": version,
            "rounds": rounds,
        }
    }


def _python() -> tuple[str, str] | None:
    from jitr_functions.bundle_aws import RUNTIMES, _target_interpreter

    for version in RUNTIMES:
        found = _target_interpreter(version)
        if found is not None:
            return version, found
    return None


def _time(command: list[str], env: dict[str, str], stdin: str | None, answer: str) -> float:
    """Seconds from starting ``command`` to its printing ``answer`` (its exit, after, is not counted)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    if stdin is not None:
        process.stdin.write(stdin + "\n")
        process.stdin.flush()
    line = process.stdout.readline().strip()
    elapsed = time.perf_counter() - started
    _, err = process.communicate(timeout=120)
    if line != answer:
        raise RuntimeError(f"expected {answer!r}, found {line!r}: {err.strip()[-2000:]}")
    return elapsed


def _bundle(out: Path, directory: Path, version: str, options: list[str]) -> Path:
    """``jitr bundle aws`` for ``version`` at ``out`` (unless it is there), unpacked into ``directory``."""
    if not out.is_file():
        command = [sys.executable, "-m", "jitr_functions", "bundle", "aws", "--python", version, "--out", str(out)]
        subprocess.run([*command, *options], check=True, capture_output=True, text=True, timeout=900)
    with zipfile.ZipFile(out) as archive:
        archive.extractall(directory)
    return directory


def _runtime(directory: Path, interpreter: str) -> Path:
    """boto3 and its dependencies as installed here, compiled for ``interpreter`` (Lambda's runtime ships them so)."""
    directory.mkdir()
    for name in RUNTIME_MODULES:
        module = __import__(name)
        source = Path(module.__file__ or "")
        if source.name == "__init__.py":
            shutil.copytree(source.parent, directory / source.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / source.name)
    subprocess.run(
        [interpreter, "-I", "-m", "compileall", "-q", "-j", "0", str(directory)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return directory


def _deployment(endpoint: str) -> tuple[dict[str, str], str]:
    """The webhook function's resources in moto; its environment, and a queue for the floor to send to."""
    import boto3
    from jitr_aws.dynamodb import create_table
    from jitr_core.settings import Settings

    run = uuid.uuid4().hex[:8]
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    queues = {name: sqs.create_queue(QueueName=f"jitr-{run}-{name}")["QueueUrl"] for name in ("jobs", "lifecycle")}
    floor = sqs.create_queue(QueueName=f"floor-{run}")["QueueUrl"]
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
    secrets.create_secret(Name=f"jitr/{run}/webhook", SecretString=SECRET)
    env = {
        **CREDENTIALS,
        "PATH": os.environ.get("PATH", ""),
        "JITR_PROVIDER": "aws",
        "JITR_GITHUB_APP_ID": "1",
        "JITR_SECRETS_WEBHOOK_SECRET": f"jitr/{run}/webhook",
        "JITR_POOLS": json.dumps(
            [
                {
                    "name": "linux",
                    "labels": ["self-hosted", "linux", "x64"],
                    "machine_types": ["m7i.large"],
                    "image": "ami-12345678",
                }
            ]
        ),
        "JITR_LOG_LEVEL": "WARNING",
        "JITR_AWS_REGION": REGION,
        "JITR_AWS_ENDPOINT_URL": endpoint,
        "JITR_AWS_TABLE": f"jitr-{run}",
        "JITR_AWS_JOBS_QUEUE_URL": queues["jobs"],
        "JITR_AWS_LIFECYCLE_QUEUE_URL": queues["lifecycle"],
        "AWS_LAMBDA_FUNCTION_NAME": "jitr-webhook",
    }
    create_table(Settings.from_env(env))
    return env, floor


def _event() -> str:
    """A function URL request carrying GitHub's ``workflow_job.queued`` with a new delivery id."""
    signature = "sha256=" + hmac.new(SECRET.encode(), PAYLOAD, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": "workflow_job",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": signature,
    }
    request = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(PAYLOAD).decode(),
        "isBase64Encoded": True,
    }
    return json.dumps(request)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--bundles", type=Path, help="keep the zips in this directory and reuse them")
    args = parser.parse_args()
    print(json.dumps(targets(args.quick, args.bundles), indent=2))
