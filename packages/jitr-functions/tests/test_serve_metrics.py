"""``jitr serve``'s ``GET /metrics``: scraped over HTTP from a real runtime after jobs ran end to end."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from e2e_support import POOL, QUIET, NoCapacity, queue_jobs, record, wait_completed, wait_for
from jitr_core.metrics import CATALOGUE, Kind
from jitr_functions.local import serve_metrics
from jitr_functions.prometheus import PREFIX
from jitr_functions.sandbox import Sandbox
from prometheus_client.parser import text_string_to_metric_families

REPO = "octo-org/api"
SPOT_CANDIDATES = len(POOL["machine_types"]) * len(POOL["placements"])


def _get(sandbox: Sandbox, path: str, method: str = "GET") -> tuple[int, str, str]:
    assert sandbox.runtime is not None
    url = urlsplit(sandbox.runtime.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read().decode()
    finally:
        connection.close()


def _scrape(sandbox: Sandbox) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed as Prometheus parses it: {(name, labels): value}."""
    status, content_type, text = _get(sandbox, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_jobs_ran_show_counters_and_the_queue_time_histogram(e2e_sandbox: Any) -> None:
    no_spot = NoCapacity()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-no-spot", no_spot)])
    jobs = queue_jobs(sandbox, 2, [REPO])
    wait_completed(sandbox, jobs, 60)
    wait_for(lambda: all(record(sandbox, "job", j).state == "completed" for j in jobs), 60, "the job records")

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        scraped = _scrape(sandbox)
        completed = _value(scraped, "jitr_jobs_completed_total", pool="linux", conclusion="success")
        return scraped if completed == 2 else None

    scraped = wait_for(counted, 60, "both completions counted", detail=lambda: _get(sandbox, "/metrics")[2][-3000:])
    assert _value(scraped, "jitr_jobs_routed_total", queue="jobs") == 2
    assert _value(scraped, "jitr_jobs_routed_total", queue="lifecycle") >= 4  # in_progress and completed, each
    assert _value(scraped, "jitr_jobs_received_total", pool="linux") == 2
    assert _value(scraped, "jitr_jobs_launched_total", pool="linux", market="on_demand") == 2
    assert _value(scraped, "jitr_jobs_launched_total", pool="linux", market="spot") == 0
    machine, zone = POOL["machine_types"][0], POOL["placements"][0]
    assert _value(scraped, "jitr_capacity_errors_total", machine_type=machine, zone=zone) == 2
    attempts = {"pool": "linux", "machine_type": machine, "placement": zone}
    assert _value(scraped, "jitr_launch_attempts_total", **attempts, market="spot") == 2
    assert _value(scraped, "jitr_launch_attempts_total", **attempts, market="on_demand") == 2
    refused = _value(scraped, "jitr_launch_failures_total", pool="linux", reason="capacity", placement=zone)
    assert refused == 2 * len(POOL["machine_types"])
    assert _value(scraped, "jitr_queue_time_seconds_count", pool="linux") == 2
    assert _value(scraped, "jitr_queue_time_seconds_bucket", pool="linux", le="+Inf") == 2
    assert _value(scraped, "jitr_queue_time_seconds_sum", pool="linux") > 0
    assert _value(scraped, "jitr_boot_time_seconds_count", pool="linux") == 2
    assert 0 <= _value(scraped, "jitr_github_rate_limit_remaining") <= 5000
    assert SPOT_CANDIDATES == 4  # the figures above assume the pool's 2 types × 2 placements

    names = {name for name, _ in scraped}
    for metric in CATALOGUE.values():  # every catalogue metric is declared, whatever was recorded
        suffix = {Kind.COUNTER: "_total", Kind.DISTRIBUTION: "_count", Kind.GAUGE: ""}[metric.kind]
        if metric.labels:
            continue  # a labelled family shows samples only once a label set was recorded
        assert PREFIX + metric.name + suffix in names

    _, _, text = _get(sandbox, "/metrics")
    assert sandbox.webhook_secret not in text


def test_hostile_label_values_cannot_break_the_exposition(e2e_sandbox: Any) -> None:
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    assert sandbox.runtime is not None and serve_metrics(sandbox.app) is sandbox.runtime.metrics  # one per app
    hostile = ['evil"} 1\n# TYPE jitr_jobs_received_total gauge\nx{a="', "p" * 100_000, "", "tab\there", "ünï\\"]
    for value in hostile:
        sandbox.app.backend.metrics.record("runner_no_job_exits", pool=value)
    scraped = _scrape(sandbox)  # the parser would fail on a broken line
    pools = sorted(labels[0][1] for name, labels in scraped if name == "jitr_runner_no_job_exits_total")
    evil = "evil___1___TYPE_jitr_jobs_received_total_gauge_x_a=_"
    assert pools == sorted([evil, "p" * 64, "none", "tab_here", "_n__"])
    assert all(value == 1 for (name, _), value in scraped.items() if name == "jitr_runner_no_job_exits_total")
    assert _get(sandbox, "/metrics", "HEAD")[0] == 200
    assert _get(sandbox, "/nothing-here")[0] == 404


def test_the_metrics_page_lists_exactly_the_catalogue() -> None:
    page = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"
    if not page.is_file():
        pytest.skip(f"no {page}: the package is installed without its repository")
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \| ([^|]+) \|", page.read_text(), re.MULTILINE)
    listed = {name: (kind, re.findall(r"`([a-z_]+)`", labels)) for name, kind, labels in rows}
    assert listed == {m.name: (m.kind.value, list(m.labels)) for m in CATALOGUE.values()}
