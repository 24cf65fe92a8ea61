"""The Cloud Run targets' metrics: one structured log entry per sample, from real runs on the emulators."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

from gcp_support import (
    FIXTURES,
    LABELS,
    WEBHOOK_SECRET,
    Deployment,
    FunctionServer,
    runner,
    wait_for,
)
from jitr_core.metrics import CATALOGUE, Kind

pytest_plugins = ["conftest_gcp"]

_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")


def metric_entries(server: FunctionServer) -> list[dict[str, Any]]:
    """The server's metric entries, each checked as the log-based metrics read it."""
    entries = [r for r in server.records() if r.get("logger") == "jitr.metrics"]
    for entry in entries:
        metric = CATALOGUE[entry["metric"]]
        assert not metric.log_message  # a log-counted metric is never written as an entry
        assert entry["severity"] == "INFO" and entry["message"] == f"metric {metric.name}"
        assert isinstance(entry["value"], (int, float))
        assert set(entry) == {"severity", "logger", "message", "metric", "value", *metric.labels}
        assert all(isinstance(entry[label], str) and entry[label] for label in metric.labels)
        if metric.kind is Kind.COUNTER:
            assert entry["value"] == 1  # a log-based counter counts entries
    return entries


def find(entries: list[dict[str, Any]], metric: str, **labels: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["metric"] == metric and all(e.get(k) == v for k, v in labels.items())]


def test_a_job_run_end_to_end_writes_its_metric_entries(deployment: Deployment) -> None:
    webhook, scaleup, lifecycle = (deployment.serve(t) for t in ("webhook", "scaleup", "lifecycle"))
    deployment.push("jobs", scaleup)
    deployment.push("lifecycle", lifecycle)
    deployment.sim.set_webhook(webhook.url, WEBHOOK_SECRET)

    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    wait_for(lambda: deployment.instances(runner(job_id)), 60, f"an instance for job {job_id}")
    with deployment.compute.lock:
        instance = next(i for (_, name), i in deployment.compute.instances.items() if name == runner(job_id))
    script = next(item["value"] for item in instance["metadata"]["items"] if item["key"] == "startup-script")
    match = _JIT_IN_SCRIPT.search(script)
    assert match is not None
    agent = deployment.sim.agent_connect(base64.b64decode(match.group(1)).decode())
    assert deployment.sim.agent_poll(agent.id, timeout=10) is not None
    wait_for(lambda: deployment.backend.load("job", str(job_id)).state == "running", 60, "the job running")
    deployment.sim.agent_finish(agent.id)
    wait_for(lambda: deployment.backend.load("job", str(job_id)).state == "completed", 60, "the job completed")
    wait_for(lambda: find(metric_entries(lifecycle), "jobs_completed"), 60, "the completion's metric entry")

    pool = "linux"
    launched = metric_entries(scaleup)
    assert len(find(launched, "jobs_received", pool=pool)) == 1
    assert len(find(launched, "jobs_launched", pool=pool, market="spot")) == 1
    assert find(launched, "launch_attempts", pool=pool, market="spot")
    finished = metric_entries(lifecycle)
    [queue_time] = find(finished, "queue_time_seconds", pool=pool)
    [boot_time] = find(finished, "boot_time_seconds", pool=pool)
    assert 0 <= boot_time["value"] <= queue_time["value"]
    assert len(find(finished, "jobs_completed", pool=pool, conclusion="success")) == 1
    assert 0 < find(launched, "github_rate_limit_remaining")[-1]["value"] <= 5000
    assert metric_entries(webhook) == []  # deliveries are counted from the delivery line itself
    for server in (webhook, scaleup, lifecycle):
        assert WEBHOOK_SECRET not in server.log_text()


def test_poison_deliveries_write_dead_letter_entries(deployment: Deployment) -> None:
    scaleup = deployment.serve("scaleup")
    for name in ("MessagePublishedData-binary-simple.json", "MessagePublishedData-text-testdata.json"):
        status, _ = scaleup.post((FIXTURES / name).read_bytes())
        assert status == 200
    status, _ = scaleup.post(b"\xff\xfe not json", {"Content-Type": "application/json"})
    assert status == 200
    wait_for(lambda: len(metric_entries(scaleup)) >= 3, 30, "three dead-letter entries")
    assert [e["metric"] for e in metric_entries(scaleup)] == ["dead_letters"] * 3
    assert {e["queue"] for e in metric_entries(scaleup)} == {"jobs"}
