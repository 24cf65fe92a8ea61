"""EMF lines from a batch of samples: grouped by label set, arrays capped at 100, hostile labels harmless."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import jitr_aws.plugin
import pytest
from jitr_aws.metrics import emf_lines, write_emf
from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import CATALOGUE, Sample
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings


class Keep:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        self.samples.extend(samples)


def _samples(record: list[tuple[str, float, dict[str, object]]]) -> list[Sample]:
    """Samples made by core's recorder (so their labels are sanitised as in production)."""
    keep = Keep()
    pm = create_plugin_manager(load_entry_points=False, environ={}, extra=[("keep", keep)])
    backend = Backend(pm, Settings.from_mapping({"provider": "embedded"}))
    for name, value, labels in record:
        backend.metrics.record(name, value, **labels)
    backend.metrics.flush()
    return keep.samples


def test_one_line_per_label_set_with_counters_summed_and_observations_listed() -> None:
    samples = _samples(
        [
            ("runner_no_job_exits", 1, {"pool": "linux"}),
            ("runner_no_job_exits", 1, {"pool": "linux"}),
            ("spot_interruptions", 1, {"pool": "linux"}),
            ("queue_time_seconds", 3.5, {"pool": "linux"}),
            ("queue_time_seconds", 7.25, {"pool": "linux"}),
            ("runner_no_job_exits", 1, {"pool": "arm"}),
            ("github_rate_limit_remaining", 4000, {}),
            ("github_rate_limit_remaining", 3990, {}),
        ]
    )
    lines = [json.loads(line) for line in emf_lines(samples)]
    assert len(lines) == 3
    linux, arm, unlabelled = lines
    assert linux["pool"] == "linux" and linux["runner_no_job_exits"] == 2 and linux["spot_interruptions"] == 1
    assert linux["queue_time_seconds"] == [3.5, 7.25]
    [directive] = linux["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "jitr" and directive["Dimensions"] == [["pool"], []]  # per pool, and the total
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "runner_no_job_exits": "Count",
        "spot_interruptions": "Count",
        "queue_time_seconds": "Seconds",
    }
    assert arm["runner_no_job_exits"] == 1
    assert unlabelled["github_rate_limit_remaining"] == 3990  # a gauge's last value
    assert unlabelled["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


def test_more_than_a_hundred_observations_take_several_lines() -> None:
    samples = _samples([("boot_time_seconds", float(i), {"pool": "linux"}) for i in range(250)])
    lines = [json.loads(line) for line in emf_lines(samples)]
    assert [len(line["boot_time_seconds"]) for line in lines] == [100, 100, 50]
    assert [v for line in lines for v in line["boot_time_seconds"]] == [float(i) for i in range(250)]


def test_hostile_label_values_stay_inside_their_json_string() -> None:
    hostile = 'x"}\n{"_aws":{}}' + "y" * 5000
    samples = _samples([("runner_no_job_exits", 1, {"pool": hostile})])
    stream = io.StringIO()
    write_emf(samples, stream)
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["pool"] == "x______aws_:___" + "y" * 49
    assert set(entry) == {"_aws", "pool", "runner_no_job_exits"}


def test_every_catalogue_metric_has_a_cloudwatch_unit() -> None:
    assert {metric.unit for metric in CATALOGUE.values()} <= {"Count", "Seconds", "None"}


def test_the_deployments_namespace_names_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    # two deployments in one account and region: each one's totals stay its own
    settings = Settings.from_mapping(
        {
            "provider": "aws",
            "aws": {
                "region": "eu-west-1",
                "table": "staging-state",
                "jobs_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/staging-jobs",
                "lifecycle_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/staging-lifecycle",
                "metrics_namespace": "jitr-staging",
            },
        }
    )
    pm = create_plugin_manager(load_entry_points=False, environ={}, extra=[("aws", jitr_aws.plugin)])

    pm.hook.jitr_emit_metrics(samples=_samples([("runner_no_job_exits", 1, {"pool": "linux"})]), settings=settings)

    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "jitr-staging"
