"""Read-only views for operators: one job's timeline, and per-pool figures over a window.

Both read the store through the backend's query API only (finished records are kept
``finished_ttl_s``, so a window longer than that sees only what is left). Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..backend import Backend
from ..model import IN_FLIGHT_RUNNER_STATES, JobState, RecordQuery, RunnerState
from .records import JOB, RUNNER, JobView

_RUNNER_STATES = (RunnerState.LAUNCHED, RunnerState.BUSY, RunnerState.FINISHED, RunnerState.RETIRED)


def job_timeline(backend: Backend, job_id: int) -> dict[str, Any] | None:
    """One job's record with its timeline, as ``jitr status --job`` shows it; None when unknown."""
    record = backend.load(JOB, str(job_id))
    if record is None:
        return None
    job = JobView(record)
    return {
        "job_id": job.job_id,
        "state": record.state,
        "pool": record.pool,
        "repository": job.get("repository"),
        "attempt": job.attempt,
        "runner": job.get("runner_name") or job.launched_runner,
        "conclusion": job.get("conclusion"),
        "queued_at": job.get("queued_at"),
        "started_at": job.get("started_at"),
        "timeline": job.timeline,
        "timeline_dropped": int(job.get("timeline_dropped") or 0),
    }


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """50th, 95th and 99th percentile (nearest rank), rounded to 0.1; 0.0 for no values."""
    ordered = sorted(values)
    result: dict[str, float] = {}
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        result[name] = round(ordered[index], 1) if ordered else 0.0
    return result


def pool_stats(backend: Backend, now: float, window_s: float, pools: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Per pool, over the jobs queued and the VMs launched in the last ``window_s`` seconds.

    ``jobs`` and ``states`` count jobs by state; ``queue_ms`` is queued (webhook received) →
    in_progress; ``boot_ms`` is VM launched → its runner took a job; ``launch_failures`` counts
    refused launch attempts by the provider's error code, and ``requeues`` new launch attempts
    by reason (both from the jobs' timelines); ``launches`` splits VMs by market, ``spot_share``
    is the spot fraction of them; ``vms_in_flight`` is the VMs launched or busy now, whatever
    their age. ``pools`` names pools to list even when they saw nothing.
    """
    since = now - window_s
    figures: dict[str, dict[str, Any]] = {pool: _empty() for pool in pools}
    queue_ms: dict[str, list[float]] = {}
    boot_ms: dict[str, list[float]] = {}
    for job_state in JobState:
        for record in backend.query_all(RecordQuery(JOB, job_state, limit=500)):
            queued_at = float(record.data.get("queued_at") or record.created_at)
            job = JobView(record)
            pool = figures.setdefault(record.pool, _empty())
            for entry in job.timeline:
                if float(entry.get("t", 0.0)) < since:
                    continue
                if entry.get("event") == "launch" and entry.get("outcome") == "no-capacity":
                    pool["launch_failures"][str(entry.get("code", ""))] += 1
                elif entry.get("event") == "requeued":
                    pool["requeues"][str(entry.get("reason", ""))] += 1
            if queued_at < since:
                continue
            pool["jobs"] += 1
            pool["states"][record.state] += 1
            started_at = record.data.get("started_at")
            if started_at is not None and queued_at > 0:
                queue_ms.setdefault(record.pool, []).append((float(started_at) - queued_at) * 1000)
    for state in _RUNNER_STATES:
        for record in backend.query_all(RecordQuery(RUNNER, state, limit=500)):
            pool = figures.setdefault(record.pool, _empty())
            data = record.data
            if state in IN_FLIGHT_RUNNER_STATES and data.get("vm_id"):
                pool["vms_in_flight"] += 1
            launched_at = data.get("launched_at")
            if not data.get("vm_id") or launched_at is None or float(launched_at) < since:
                continue
            pool["launches"]["spot" if data.get("spot") else "on_demand"] += 1
            if data.get("busy_at") is not None:
                # a runner can take its job before the launch is recorded: that boot counts as 0
                boot = max(0.0, float(data["busy_at"]) - float(launched_at))
                boot_ms.setdefault(record.pool, []).append(boot * 1000)
    return {pool: _finish(pool, values, queue_ms, boot_ms) for pool, values in sorted(figures.items())}


def _empty() -> dict[str, Any]:
    return {
        "jobs": 0,
        "states": Counter[str](),
        "launch_failures": Counter[str](),
        "requeues": Counter[str](),
        "launches": {"spot": 0, "on_demand": 0},
        "vms_in_flight": 0,
    }


def _finish(
    pool: str, values: dict[str, Any], queue_ms: dict[str, list[float]], boot_ms: dict[str, list[float]]
) -> dict[str, Any]:
    launches = values["launches"]
    total = launches["spot"] + launches["on_demand"]
    return {
        "jobs": values["jobs"],
        "states": dict(sorted(values["states"].items())),
        "queue_ms": percentiles(queue_ms.get(pool, ())),
        "boot_ms": percentiles(boot_ms.get(pool, ())),
        "launch_failures": dict(sorted(values["launch_failures"].items())),
        "requeues": dict(sorted(values["requeues"].items())),
        "launches": launches,
        "spot_share": round(launches["spot"] / total, 3) if total else 0.0,
        "vms_in_flight": values["vms_in_flight"],
    }
