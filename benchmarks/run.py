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
PAYLOAD = (HERE / "queued.payload.json").read_bytes()
SECRET = "bench-webhook-secret"  # noqa: S105 - a benchmark fixture, not a credential


def headers(body: bytes, delivery: str = "d-1") -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-github-event": "workflow_job",
        "x-github-delivery": delivery,
        "x-hub-signature-256": signature,
        "content-type": "application/json",
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


def bench_publish(n: int = 5000) -> dict[str, float]:
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


def bench_serve_load() -> dict[str, Any]:
    from serve_load import run

    return run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--burst-jobs", type=int, default=1000)
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
    report: dict[str, Any] = {"python": sys.version.split()[0]}
    for name, bench in benches.items():
        if args.only and name not in args.only:
            continue
        report[name] = bench()
        print(f"{name}: {json.dumps(report[name])}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
