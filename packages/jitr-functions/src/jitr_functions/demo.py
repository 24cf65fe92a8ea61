"""``jitr demo``: the control plane on the embedded backend against a simulated GitHub.

Queues N jobs across three pools and two tenants, shows progress, and ends with a summary.
Exits 1 when a job was lost or launched twice.
"""

from __future__ import annotations

import io
import json
import sys
import time
from typing import Any

from .sandbox import DEMO_POOLS, Sandbox, SandboxFaults

LABELS = [pool["labels"] for pool in DEMO_POOLS]


def run_demo(
    jobs: int = 36, as_json: bool = False, faults: bool = False, seed: int = 7, timeout_s: float | None = None
) -> int:
    out = sys.stdout
    logs = io.StringIO()
    sandbox_faults = SandboxFaults.demo(seed) if faults else SandboxFaults()
    timeout_s = timeout_s or 60.0 + jobs * 0.2
    with Sandbox(faults=sandbox_faults, seed=seed, log_stream=logs, workers=None) as sandbox:
        repos = sandbox.repositories
        started = time.monotonic()
        job_ids = [
            sandbox.sim.queue_job(repos[i % len(repos)], LABELS[i % len(LABELS)], name=f"job-{i}") for i in range(jobs)
        ]
        if not as_json:
            handoffs = "/".join(sorted({pool.handoff for pool in sandbox.settings_in_use.pools}))
            print(
                f"jitr demo: {jobs} jobs, {len(DEMO_POOLS)} pools, {len(sandbox.installations)} tenants, "
                f"JIT configs by {handoffs} handoff{', faults injected' if faults else ''}",
                file=out,
            )
        finished = _follow(sandbox, job_ids, timeout_s, None if as_json else out)
        report: dict[str, Any] = sandbox.report(job_ids)
        report["seconds"] = round(time.monotonic() - started, 2)
        report["faults"] = faults
        report["finished_in_time"] = finished
    if as_json:
        print(json.dumps(report), file=out)
    else:
        _summary(report, out)
    return 0 if report["lost_jobs"] == 0 and report["duplicate_launches"] == 0 else 1


def _follow(sandbox: Sandbox, job_ids: list[int], timeout_s: float, out: Any) -> bool:
    deadline = time.monotonic() + timeout_s
    tty = out is not None and out.isatty()
    last = ""
    while time.monotonic() < deadline:
        jobs = [sandbox.sim.job(job_id) for job_id in job_ids]
        done = sum(j.status == "completed" for j in jobs)
        running = sum(j.status == "in_progress" for j in jobs)
        line = (
            f"  queued {len(jobs) - done - running:>4}  running {running:>4}  completed {done:>4}/{len(jobs)}"
            f"  VMs launched {sum(sandbox.vms.launches.values()):>4}"
        )
        if out is not None and line != last:
            out.write(("\r" + line) if tty else (line + "\n"))
            out.flush()
            last = line
        if done == len(jobs):
            if tty:
                out.write("\n")
            return True
        time.sleep(0.2 if tty else 1.0)
    if tty:
        out.write("\n")
    return False


def _summary(report: dict[str, Any], out: Any) -> None:
    latency = report["latency_ms"]
    ok = report["lost_jobs"] == 0 and report["duplicate_launches"] == 0
    print(
        f"\n{'OK' if ok else 'FAILED'}: {report['completed']}/{report['jobs']} jobs completed"
        f" in {report['seconds']} s\n"
        f"  VM launches        {report['launches']} ({report['surplus_launches']} beyond one per job)\n"
        f"  duplicate launches {report['duplicate_launches']}\n"
        f"  lost jobs          {report['lost_jobs']}\n"
        f"  capacity errors    {report['capacity_errors']} (walked the fallback chain)\n"
        f"  GitHub API calls   {report['github_calls']} ({report['github_calls_per_job']} per job)\n"
        f"  webhook → launch   p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms",
        file=out,
    )
    for pool, figures in report["pools"].items():
        pool_latency = figures["latency_ms"]
        print(
            f"    {pool:<16} p50 {pool_latency['p50']} ms, p95 {pool_latency['p95']} ms, p99 {pool_latency['p99']} ms",
            file=out,
        )
    print("  per pool           queue p50/p95     boot p50/p95      spot share  launch failures", file=out)
    for pool, figures in report["pools"].items():
        queue, boot = figures.get("queue_ms", {}), figures.get("boot_ms", {})
        failures = sum(figures.get("launch_failures", {}).values())
        share = figures.get("spot_share", 0.0)
        print(
            f"    {pool:<16} {queue.get('p50', 0.0):>6}/{queue.get('p95', 0.0):<6} ms "
            f"{boot.get('p50', 0.0):>6}/{boot.get('p95', 0.0):<6} ms {share:>9.0%}  {failures}",
            file=out,
        )
