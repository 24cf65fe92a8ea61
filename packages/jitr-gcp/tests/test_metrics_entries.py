"""Structured metric entries: one JSON line per sample, labels as fields, hostile values harmless."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import Sample
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_gcp.metrics import write_entries


class Keep:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        self.samples.extend(samples)


def test_each_sample_is_one_entry_with_its_labels_as_fields() -> None:
    keep = Keep()
    pm = create_plugin_manager(load_entry_points=False, environ={}, extra=[("keep", keep)])
    backend = Backend(pm, Settings.from_mapping({"provider": "embedded"}))
    backend.metrics.record("runner_no_job_exits", pool='x"}\n{"metric":"dead_letters"')
    backend.metrics.record("queue_time_seconds", 4.5, pool="linux")
    backend.metrics.record("github_rate_limit_remaining", 4321)
    backend.metrics.flush()
    stream = io.StringIO()
    write_entries(keep.samples, stream)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "severity": "INFO",
            "logger": "jitr.metrics",
            "message": "metric runner_no_job_exits",
            "metric": "runner_no_job_exits",
            "value": 1.0,
            "pool": "x_____metric_:_dead_letters_",
        },
        {
            "severity": "INFO",
            "logger": "jitr.metrics",
            "message": "metric queue_time_seconds",
            "metric": "queue_time_seconds",
            "value": 4.5,
            "pool": "linux",
        },
        {
            "severity": "INFO",
            "logger": "jitr.metrics",
            "message": "metric github_rate_limit_remaining",
            "metric": "github_rate_limit_remaining",
            "value": 4321.0,
        },
    ]
