"""The AWS IaC's metrics are exactly jitr_core.metrics.CATALOGUE: one source of truth for names,
kinds, dimensions and the log line each webhook metric counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cfn_stack import load_template
from jitr_core.metrics import CATALOGUE, DELIVERY_LOGGER

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

TERRAFORM = Path(__file__).resolve().parents[2] / "aws" / "terraform" / "metrics.tf"


def _plain(value: Any) -> Any:
    """python-hcl2's quoted string literals as plain values."""
    if isinstance(value, str) and value.startswith('"') and value.endswith('"'):
        return json.loads(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def catalogue() -> dict[str, tuple[str, list[str], str | None]]:
    return {m.name: (m.kind.value, list(m.labels), m.log_message or None) for m in CATALOGUE.values()}


def test_the_terraform_metrics_are_the_catalogue() -> None:
    with TERRAFORM.open() as handle:
        local = hcl2.load(handle)["locals"][0]
    declared = {
        name: (_plain(m["kind"]), _plain(m["labels"]), _plain(m["log_message"])) for name, m in local["metrics"].items()
    }
    assert declared == catalogue()
    assert _plain(local["metrics_namespace"]) == "${var.name_prefix}"  # one namespace per deployment


def test_the_cloudformation_metric_filters_alarm_and_dashboard_name_catalogue_metrics() -> None:
    resources = load_template()["Resources"]
    filters = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::Logs::MetricFilter":
            [transformation] = resource["Properties"]["MetricTransformations"]
            filters[transformation["MetricName"]] = (resource["Properties"]["FilterPattern"], transformation)
    counted = {m.name: m for m in CATALOGUE.values() if m.log_message}
    assert set(filters) == set(counted)
    for name, (pattern, transformation) in filters.items():
        metric = counted[name]
        assert pattern == f'{{ ($.logger = "{DELIVERY_LOGGER}") && ($.message = "{metric.log_message}") }}'
        assert transformation["MetricNamespace"] == {"Ref": "NamePrefix"}
        assert [d["Key"] for d in transformation.get("Dimensions", [])] == list(metric.labels)
        assert all(d["Value"] == f"$.{d['Key']}" for d in transformation.get("Dimensions", []))

    jitr_alarms = [
        r["Properties"]["MetricName"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == {"Ref": "NamePrefix"}
    ]
    assert jitr_alarms == ["runner_no_job_exits"]

    body = json.loads(resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    assert [w["properties"]["title"] for w in body["widgets"]] == list(CATALOGUE)
    for widget in body["widgets"]:
        metric = CATALOGUE[widget["properties"]["title"]]
        dimensions = ",".join(['"${NamePrefix}"', *metric.labels])
        for [query] in widget["properties"]["metrics"]:
            assert query["expression"].startswith(f"SEARCH('{{{dimensions}}} MetricName=\"{metric.name}\"'")
