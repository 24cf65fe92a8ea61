"""Webhook → runner online with a warm VM waiting at the broker, beside the cold broker-mode path.

A ``jitr serve`` deployment (embedded backend, local-process VMs, the broker on its HTTP server)
with the GitHub simulator over HTTP. One job at a time: the time is from the job queued on the
simulator (its webhook leaves then) to GitHub marking it in progress, which the runner does the
moment it comes online (the simulator's agent takes a queued job at once). With ``warm = 1`` each
round waits until the pool is refilled and the new VM waits at the broker; the cold rounds launch
a VM per job (process start, startup script, the broker call, the agent).

``python benchmarks/warm.py [--quick]`` prints the targets as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = 20
QUICK_ROUNDS = 6
TARGET_P95_S = 1.0
LABELS = ["self-hosted", "linux", "x64"]
SECRET = "whsec-warm-benchmark-0123456789"  # noqa: S105 - the benchmark deployment's own
AGENT = f"{sys.executable} -m jitr_github.simulator.agent --job-seconds 0.05 --wait-seconds 30"


def _wait(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise TimeoutError(f"{what} within {timeout_s} s")


def online_times(warm: int, rounds: int) -> list[float]:
    """Seconds from each job queued to it running, one job at a time, on a pool with ``warm`` warm VMs."""
    from jitr_core.model import RecordQuery
    from jitr_core.services.warm import WAITING, WARM
    from jitr_core.settings import Settings
    from jitr_functions.app import build_app
    from jitr_functions.local import Intervals, LocalRuntime, free_port
    from jitr_github.simulator import GitHubSimulator

    sim = GitHubSimulator()
    api_url = sim.start()
    sim.add_installation("octo-org", repos=["api"])
    with tempfile.TemporaryDirectory(prefix="jitr-warm-bench-") as tmp:
        state = Path(tmp)
        (state / "webhook_secret").write_text(SECRET)
        (state / "app.pem").write_text(sim.private_key_pem)
        port = free_port()
        pool = {"name": "linux", "labels": LABELS, "machine_types": ["local"], "max_runners": 10}
        data = {
            "provider": "embedded",
            "github": {"app_id": str(sim.app_id), "api_url": api_url},
            "secrets": {
                "webhook_secret": f"file:{state / 'webhook_secret'}",
                "github_app_private_key": f"file:{state / 'app.pem'}",
            },
            "embedded": {"state_dir": str(state / "state"), "runner_command": f"exec {AGENT}"},
            "pools": [{**pool, "handoff": "broker", "warm": warm}],
            "broker_url": f"http://127.0.0.1:{port}/broker",
            "log_level": "ERROR",
        }
        app = build_app(Settings.from_mapping(data, source="warm-benchmark"), environ={}, log_stream=io.StringIO())
        quiet = Intervals(scaledown_s=3600.0, rebalancer_s=3600.0, visibility_timeout_s=1)
        runtime = LocalRuntime(app, port=port, workers=2, intervals=quiet).start()
        sim.set_webhook(runtime.url + "/webhook", SECRET)

        def ready() -> bool:
            records = app.backend.query_all(RecordQuery(WARM, WAITING, limit=50))
            return len([r for r in records if r.data.get("asked_at")]) >= warm

        times = []
        try:
            if warm:
                app.scaledown.run()
            for i in range(rounds):
                _wait(ready, 60, "the warm pool waiting at the broker")
                job_id = sim.queue_job("octo-org/api", LABELS, name=f"bench-{i}")
                job = _wait(lambda: (j := sim.job(job_id)).status != "queued" and j, 60, "the job to run")  # noqa: B023
                times.append(job.started_at - job.created_at)
                _wait(lambda: sim.job(job_id).status == "completed", 60, "the job to complete")  # noqa: B023
        finally:
            for vm in app.backend.list_vms():
                if vm.running:
                    app.backend.terminate_vm(vm.vm_id)
            runtime.stop(timeout_s=5.0)
            sim.stop()
    return times


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def targets(quick: bool = False) -> dict[str, dict[str, Any]]:
    """``warm_online_p95_s``: webhook → runner online with a warm VM, the cold figure beside it."""
    rounds = QUICK_ROUNDS if quick else ROUNDS
    warm = online_times(1, rounds)
    cold = online_times(0, rounds)
    p95 = _p95(warm)
    return {
        "warm_online_p95_s": {
            "value": round(p95, 3),
            "target": TARGET_P95_S,
            "met": p95 <= TARGET_P95_S,
            "rounds": rounds,
            "p50_s": round(statistics.median(warm), 3),
            "max_s": round(max(warm), 3),
            "cold_online_p95_s": round(_p95(cold), 3),
            "cold_online_p50_s": round(statistics.median(cold), 3),
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds instead of {ROUNDS}")
    print(json.dumps(targets(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
