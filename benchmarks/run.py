"""Measure jitr's performance targets and print one JSON report (see README.md)."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
GITHUB_PAYLOAD = (HERE / "queued.payload.json").read_bytes()  # labels ["ubuntu-latest"]: no pool serves it
LABELS = ["self-hosted", "linux", "x64"]
SECRET = "bench-webhook-secret"  # noqa: S105 - a benchmark fixture, not a credential
TARGET_MODULES = ("cold_start", "burst", "warm")  # optional modules beside this one, each with targets(quick)


def payload(
    labels: list[str] = LABELS, action: str = "queued", private: bool = True, runner: str = "jitr-linux-1-1"
) -> bytes:
    """GitHub's example delivery, as a job of the benchmark's pool (or of ``labels``), same size and shape."""
    data = json.loads(GITHUB_PAYLOAD)
    data["action"] = action
    data["workflow_job"]["labels"] = labels
    data["repository"]["private"] = private
    if action != "queued":
        data["workflow_job"]["status"] = action
        data["workflow_job"]["runner_name"] = runner
        data["workflow_job"]["runner_id"] = 1
    return json.dumps(data, indent=2).encode()


PAYLOAD = payload()


def headers(body: bytes, delivery: str = "d-1") -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-github-event": "workflow_job",
        "x-github-delivery": delivery,
        "x-hub-signature-256": signature,
        "content-type": "application/json",
    }


def function_url_headers(body: bytes) -> dict[str, str]:
    """What a function URL hands the webhook with a delivery: GitHub's headers, named in lower case,
    and those the URL adds."""
    return {
        **headers(body),
        "accept": "*/*",
        "user-agent": "GitHub-Hookshot/3f9c2a1",
        "x-github-hook-id": "412345678",
        "x-github-hook-installation-target-id": "123456",
        "x-github-hook-installation-target-type": "integration",
        "x-hub-signature": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "content-length": str(len(body)),
        "host": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws",
        "x-amzn-tls-version": "TLSv1.3",
        "x-amzn-tls-cipher-suite": "TLS_AES_128_GCM_SHA256",
        "x-amzn-trace-id": "Root=1-674e1c2b-5f302e550dcde3b12402207d",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "x-forwarded-for": "140.82.115.12",
    }


def bench_inspect(seconds: float = 2.0) -> float:
    from jitr_core.webhook import inspect

    h = headers(PAYLOAD)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            inspect(h, PAYLOAD, SECRET, 1 << 20)
        count += 200
    return round(count / (time.perf_counter() - start))


def _embedded_app(state: Path, pools: list[dict[str, Any]] | None = None) -> Any:
    from jitr_core.settings import Settings
    from jitr_functions.app import build_app

    (state / "secret").write_text(SECRET)
    settings = Settings.from_mapping(
        {
            "provider": "embedded",
            "log_level": "ERROR",
            "secrets": {"webhook_secret": f"file:{state / 'secret'}"},
            "embedded": {"state_dir": str(state / "db")},
            "pools": pools or [{"name": "linux", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m"]}],
        }
    )
    return build_app(settings, environ={}, log_stream=open("/dev/null", "w"))


def bench_publish(n: int = 5000) -> dict[str, float]:  # a job of the pool: routed and enqueued
    with tempfile.TemporaryDirectory() as tmp:
        app = _embedded_app(Path(tmp))
        events = [(headers(PAYLOAD, str(uuid.uuid4())), PAYLOAD) for _ in range(n)]
        app.webhook.handle(*events[0])
        cpu, wall = time.process_time(), time.perf_counter()
        for h, body in events[1:]:
            app.webhook.handle(h, body)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"events_per_s": round((n - 1) / wall), "cpu_us_per_event": round(cpu / (n - 1) * 1e6, 1)}


def bench_enqueue(n: int = 20000) -> float:
    from jitr_core.model import QueueMessage

    with tempfile.TemporaryDirectory() as tmp:
        app = _embedded_app(Path(tmp))
        message = QueueMessage('{"v":1,"type":"job","job_id":1}', {"type": "job"})
        app.backend.enqueue("jobs", message)
        start = time.perf_counter()
        for _ in range(n):
            app.backend.enqueue("jobs", message)
        return round(n / (time.perf_counter() - start))


def bench_discovery(rounds: int = 20) -> float:
    from jitr_core.plugins import create_plugin_manager

    create_plugin_manager()
    start = time.perf_counter()
    for _ in range(rounds):
        create_plugin_manager()
    return round((time.perf_counter() - start) / rounds * 1000, 2)


COLD = """
import sys, time, tempfile, pathlib
t0 = float(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from run import _embedded_app, headers, PAYLOAD
app = _embedded_app(pathlib.Path(tempfile.mkdtemp()))
response = app.webhook.handle(headers(PAYLOAD), PAYLOAD)
assert response.status == 202, response
print((time.time() - t0) * 1000)
"""


def bench_cold_start(rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", COLD, repr(time.time()), str(HERE)], capture_output=True, text=True, check=True
        ).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return round(sorted(samples)[len(samples) // 2], 1)


def bench_burst(jobs: int = 1000) -> dict[str, Any]:
    from jitr_functions.local import Intervals
    from jitr_functions.sandbox import Sandbox, SandboxFaults, VMFaults

    pools = [{"name": "linux", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m"], "max_runners": jobs}]
    faults = SandboxFaults(vms=VMFaults(job_seconds=(0.01, 0.05)))
    with Sandbox(
        pools=pools,
        faults=faults,
        settings={"max_runners": jobs, "log_level": "ERROR", "rebalance_grace_s": 60},
        intervals=Intervals(scaledown_s=30, rebalancer_s=10),
        log_stream=open("/dev/null", "w"),
        workers=4,
    ) as sandbox:
        repos = sandbox.repositories
        sandbox.sim.reset_call_counts()
        start = time.monotonic()
        ids = [sandbox.sim.queue_job(repos[i % len(repos)], ["self-hosted", "linux", "x64"]) for i in range(jobs)]
        queued_in = time.monotonic() - start
        sandbox.wait_until(lambda: sandbox.all_done(ids), timeout_s=600, step_s=0.5)
        report = sandbox.report(ids)
        calls = sandbox.sim.call_counts()
        report["queued_in_s"] = round(queued_in, 2)
        report["seconds"] = round(time.monotonic() - start, 2)
        report["github_calls_per_job"] = round(sum(calls.values()) / jobs, 3)
        report["github_calls"] = calls
        return report


def bench_periodic_reads(finished: int = 100_000, in_flight: int = 200) -> dict[str, Any]:
    from jitr_core.model import Record, RunnerState
    from jitr_github.simulator import GitHubSimulator

    with tempfile.TemporaryDirectory() as tmp, GitHubSimulator() as sim:
        state = Path(tmp)
        app = _embedded_app(state)
        sim.add_installation("octo-org", repos=["api"])
        from jitr_github import GitHubClient

        app._github = GitHubClient(str(sim.app_id), sim.private_key_pem, sim.base_url)
        now = time.time()
        store = app.backend
        for i in range(finished):
            store.create(
                Record(
                    "runner",
                    f"jitr-linux-{i}-1",
                    state=RunnerState.FINISHED,
                    pool="linux",
                    created_at=now - 3600,
                    updated_at=now - 3600,
                    expires_at=now + 86400,
                    data={"job_id": i, "owner": "octo-org", "repo": "api", "installation_id": 1},
                )
            )
            store.create(
                Record(
                    "job",
                    str(i),
                    state="completed",
                    pool="linux",
                    created_at=now - 3600,
                    updated_at=now - 3600,
                    expires_at=now + 86400,
                    data={"attempt": 1},
                )
            )
        for i in range(finished, finished + in_flight):
            store.create(
                Record(
                    "runner",
                    f"jitr-linux-{i}-1",
                    state=RunnerState.BUSY,
                    pool="linux",
                    created_at=now,
                    updated_at=now,
                    data={"job_id": i, "owner": "octo-org", "repo": "api", "installation_id": None},
                )
            )
        read = {"records": 0, "calls": 0}

        def after(outcome: Any, name: str, impls: Any, kwargs: Any) -> None:
            if name in ("jitr_query_records", "jitr_load_record"):
                result = outcome.get_result()
                read["calls"] += 1
                read["records"] += (
                    len(result.records) if name == "jitr_query_records" else int(result.record is not None)
                )

        undo = app.pm.add_hookcall_monitoring(lambda *a: None, after)
        try:
            start = time.perf_counter()
            app.scaledown.run()
            app.rebalancer.run()
            elapsed = time.perf_counter() - start
        finally:
            undo()
        return {
            "finished_records": finished,
            "in_flight": in_flight,
            "records_read": read["records"],
            "store_calls": read["calls"],
            "ms": round(elapsed * 1000, 1),
        }


# -- targets ---------------------------------------------------------------------------------


def _target(value: float, target: float, floor: float | None = None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"value": value}
    if floor is not None:
        result["floor"] = floor
    return {**result, "target": target, "met": value <= target, **extra}


def target_ignored_delivery_backend_calls() -> dict[str, Any]:
    """Store and queue calls made for deliveries of jobs no pool serves (queued, in_progress,
    completed), counted at the plugin hooks of a real embedded backend."""
    with tempfile.TemporaryDirectory() as tmp:
        app = _embedded_app(Path(tmp))
        app.webhook.handle(headers(b"{}", "warm"), b"{}")  # fetches and caches the webhook secret
        calls: list[str] = []
        undo = app.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
        deliveries = [
            payload(labels, action, runner="GitHub Actions 7")
            for labels in (["ubuntu-latest"], ["self-hosted", "gpu"])
            for action in ("queued", "in_progress", "completed")
        ]
        answers = []
        try:
            for i, body in enumerate(deliveries):
                answers.append(app.webhook.handle(headers(body, f"ignored-{i}"), body).status)
        finally:
            undo()
        return _target(
            round(len(calls) / len(deliveries), 3),
            0,
            deliveries=len(deliveries),
            answers=answers,
            hooks=sorted(set(calls)),
        )


def _moto_aws_app(endpoint: str) -> tuple[Any, Any, str]:
    """An app on moto (queues, table, secret): the app, the SQS client jitr uses, the jobs queue URL."""
    import os

    import boto3
    from jitr_aws.clients import client
    from jitr_aws.config import aws_config
    from jitr_aws.dynamodb import create_table
    from jitr_core.settings import Settings
    from jitr_functions.app import build_app

    sqs = boto3.client("sqs", region_name="eu-west-1", endpoint_url=endpoint)
    urls = {name: sqs.create_queue(QueueName=f"bench-{name}")["QueueUrl"] for name in ("jobs", "lifecycle")}
    secrets = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=endpoint)
    secrets.create_secret(Name="bench/webhook", SecretString=SECRET)
    settings = Settings.from_mapping(
        {
            "provider": "aws",
            "log_level": "INFO",
            "secrets": {"webhook_secret": "bench/webhook"},
            "aws": {
                "region": "eu-west-1",
                "endpoint_url": endpoint,
                "table": "bench",
                "jobs_queue_url": urls["jobs"],
                "lifecycle_queue_url": urls["lifecycle"],
            },
            "pools": [{"name": "linux", "labels": LABELS, "machine_types": ["m5.large"], "image": "ami-12345678"}],
        }
    )
    create_table(settings)
    app = build_app(settings, environ={}, log_stream=open(os.devnull, "w"))  # noqa: SIM115
    return app, client("sqs", aws_config(settings)), urls["jobs"]


def _interleaved(a: Any, b: Any, rounds: int, batch: int) -> tuple[float, float]:
    """CPU seconds per call of ``a`` and of ``b``, measured in alternating batches (noise hits both alike).
    Each round's pair is a ratio sample; the median round is returned (a preemption spoils one round)."""
    samples = []
    for _ in range(rounds):
        t = time.thread_time()
        for _ in range(batch):
            a()
        ta = time.thread_time() - t
        t = time.thread_time()
        for _ in range(batch):
            b()
        tb = time.thread_time() - t
        samples.append((ta / tb if tb else float("inf"), ta / batch, tb / batch))
    samples.sort()
    _, ta, tb = samples[len(samples) // 2]
    return ta, tb


def target_publish_cpu_vs_send_floor(quick: bool = False) -> dict[str, Any]:
    """The webhook service's CPU per routed event against a bare ``send_message`` of the same body
    through the same boto3 client (the floor: what enqueueing alone costs the function). AWS is
    moto in a server thread of this process; the CPU counted is the calling thread's, as a Lambda's."""
    from jitr_aws.testing import moto_server
    from jitr_core.messages import JobMessage, encode
    from jitr_core.webhook import inspect, lower_headers

    with moto_server() as endpoint:
        app, sqs, url = _moto_aws_app(endpoint)
        event = inspect(lower_headers(headers(PAYLOAD)), PAYLOAD, SECRET, 1 << 20)
        message = encode(JobMessage.from_job(event.job, event.delivery_id, time.time()))
        attributes = {k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items() if v}
        ids, signed = iter(range(10**9)), headers(PAYLOAD)

        def publish() -> None:
            response = app.webhook.handle({**signed, "x-github-delivery": f"d-{next(ids)}"}, PAYLOAD)
            assert response.status == 202, response

        def send() -> None:
            sqs.send_message(QueueUrl=url, MessageBody=message.body, DelaySeconds=0, MessageAttributes=attributes)

        publish(), send()
        for _ in range(3 if quick else 10):  # warm both paths
            publish(), send()
        cpu, floor = _interleaved(publish, send, rounds=5 if quick else 15, batch=20 if quick else 40)
    # value: CPU per routed event / CPU per bare send; floor: the bare send's CPU, in µs
    return _target(round(cpu / floor, 3), 1.3, floor=round(floor * 1e6), cpu_us=round(cpu * 1e6))


def target_handler_vs_inspect(quick: bool = False) -> dict[str, Any]:
    """The whole Lambda webhook handler (function-URL event in, HTTP answer and one JSON log line
    out) with an enqueue that publishes nothing, against ``inspect()`` alone on the same delivery."""
    import os

    import jitr_functions.app
    import pluggy
    from jitr_core.settings import Settings
    from jitr_core.webhook import inspect
    from jitr_functions import aws
    from jitr_functions.app import build_app

    class Discard:
        @pluggy.HookimplMarker("jitr")(tryfirst=True)
        def jitr_enqueue(self, queue: str, message: Any, delay_s: int, settings: Any) -> str:
            return "discarded"

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "secret").write_text(SECRET)
        settings = Settings.from_mapping(
            {
                "provider": "embedded",
                "log_level": "INFO",  # the handler's log line is part of its cost
                "secrets": {"webhook_secret": f"file:{state / 'secret'}"},
                "embedded": {"state_dir": str(state / "db")},
                "pools": [{"name": "linux", "labels": LABELS, "machine_types": ["m"]}],
            }
        )
        app = build_app(settings, environ={}, extra_plugins=[("discard", Discard())], log_stream=open(os.devnull, "w"))  # noqa: SIM115
        previous, jitr_functions.app._APP = jitr_functions.app._APP, app
        h = function_url_headers(PAYLOAD)
        core_headers = headers(PAYLOAD)  # what inspect() reads
        request = {  # a function-URL event (version 2.0)
            "version": "2.0",
            "rawPath": "/",
            "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "bench"},
            "headers": h,
            "body": PAYLOAD.decode(),
            "isBase64Encoded": False,
        }

        class Context:
            aws_request_id = "bench-request"

        ids = iter(range(10**9))

        def handler() -> None:
            h["x-github-delivery"] = f"d-{next(ids)}"  # not signed: a new delivery each time
            response = aws.webhook(request, Context)
            assert response["statusCode"] == 202, response

        def core() -> None:
            inspect(core_headers, PAYLOAD, SECRET, 1 << 20)

        try:
            handler(), core()
            cpu, floor = _interleaved(handler, core, rounds=7 if quick else 21, batch=100 if quick else 300)
        finally:
            jitr_functions.app._APP = previous
    return _target(round(cpu / floor, 3), 1.5, handler_cpu_us=round(cpu * 1e6, 1), inspect_cpu_us=round(floor * 1e6, 1))


def targets(quick: bool = False, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """This file's targets, merged with those of the optional modules beside it (TARGET_MODULES)."""
    import importlib

    found: dict[str, Any] = {
        "ignored_delivery_backend_calls": target_ignored_delivery_backend_calls,
        "publish_cpu_vs_send_floor": lambda: target_publish_cpu_vs_send_floor(quick),
        "handler_vs_inspect": lambda: target_handler_vs_inspect(quick),
    }
    result: dict[str, dict[str, Any]] = {}
    for name, measure in found.items():
        if not only or name in only:
            result[name] = measure()
            print(f"target {name}: {json.dumps(result[name])}", file=sys.stderr)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    for module in TARGET_MODULES:
        if (only and module not in only) or not (HERE / f"{module}.py").exists():
            continue
        try:
            measured = importlib.import_module(module).targets(quick=quick)
        except Exception as exc:  # one module's failure leaves the others' report
            measured = {f"{module}_error": {"value": None, "met": False, "error": f"{type(exc).__name__}: {exc}"}}
        for name, value in measured.items():
            print(f"target {name}: {json.dumps(value)}", file=sys.stderr)
        result.update(measured)
    return result


def bench_serve_load() -> dict[str, Any]:
    from serve_load import run

    return run()


def _commit() -> str:
    found = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--burst-jobs", type=int, default=1000)
    parser.add_argument("--targets-only", action="store_true", help="measure the targets only")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (the targets' ratios are noisier)")
    args = parser.parse_args()
    benches = {
        "webhook_inspect_per_s": bench_inspect,
        "webhook_publish": bench_publish,
        "embedded_enqueue_per_s": bench_enqueue,
        "plugin_discovery_ms": bench_discovery,
        "cold_start_ms": bench_cold_start,
        "periodic_reads": bench_periodic_reads,
        "burst": lambda: bench_burst(args.burst_jobs),
        "serve_load": bench_serve_load,
    }
    report: dict[str, Any] = {"python": sys.version.split()[0], "commit": _commit()}
    report["targets"] = targets(args.quick, args.only)
    for name, bench in benches.items():
        if args.targets_only or (args.only and name not in args.only):
            continue
        report[name] = bench()
        print(f"{name}: {json.dumps(report[name])}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
