"""The GCP IaC's log-based metrics are exactly jitr_core.metrics.CATALOGUE, and what they filter on
is what jitr_gcp writes: one source of truth for names, kinds and labels."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

from gcp_iac_terraform import MODULE, load, unquote
from jitr_core.metrics import CATALOGUE, DELIVERY_LOGGER
from jitr_gcp.metrics import LOGGER


def _plain(value: Any) -> Any:
    return [unquote(v) for v in value] if isinstance(value, list) else unquote(value)


@pytest.fixture(scope="module")
def metrics_tf() -> dict[str, Any]:
    return load(MODULE / "metrics.tf")


def test_the_log_based_metrics_are_the_catalogue(metrics_tf: dict[str, Any]) -> None:
    local = metrics_tf["locals"][0]["metrics"]
    declared = {name: (_plain(m["kind"]), _plain(m["labels"]), _plain(m["log_message"])) for name, m in local.items()}
    assert declared == {m.name: (m.kind.value, list(m.labels), m.log_message or None) for m in CATALOGUE.values()}


def test_the_filters_select_the_lines_jitr_writes(metrics_tf: dict[str, Any]) -> None:
    text = (MODULE / "metrics.tf").read_text()
    assert f'jsonPayload.logger=\\"{LOGGER}\\"' in text and f'jsonPayload.logger=\\"{DELIVERY_LOGGER}\\"' in text
    assert 'jsonPayload.metric=\\"${each.key}\\"' in text
    assert 'label => "EXTRACT(jsonPayload.${label})"' in text and '"EXTRACT(jsonPayload.value)"' in text
    [logging_metric] = [r['"google_logging_metric"'] for r in metrics_tf["resource"] if '"google_logging_metric"' in r]
    assert logging_metric['"jitr"']["for_each"] == "${local.metrics}"


def test_the_alert_policies_watch_catalogue_metrics(metrics_tf: dict[str, Any]) -> None:
    text = (MODULE / "metrics.tf").read_text()
    watched = set(re.findall(r'local\.metric_type\["([a-z_]+)"\]', text))
    assert watched == {"dead_letters", "runner_no_job_exits"} and watched <= set(CATALOGUE)
    kind = '"google_monitoring_alert_policy"'
    policies = [r[kind] for r in metrics_tf["resource"] if kind in r]
    assert {name for policy in policies for name in policy} == {'"dead_letters"', '"no_job_exits"'}
