"""The metrics catalogue and recorder: samples reach every plugin's ``jitr_emit_metrics`` once per flush."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pytest
from jitr_core import metrics
from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import CATALOGUE, Kind, MetricError, Sample, label_value
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings

SETTINGS = Settings.from_mapping({"provider": "embedded"})


class Collector:
    """A plugin that keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        assert settings is SETTINGS
        self.batches.append(list(samples))


class Broken:
    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        raise RuntimeError("emitter down")


def _backend(*plugins: object) -> Backend:
    extra = [(f"p{i}", plugin) for i, plugin in enumerate(plugins)]
    return Backend(create_plugin_manager(load_entry_points=False, environ={}, extra=extra), SETTINGS)


def test_the_catalogue_is_well_formed() -> None:
    for name, metric in CATALOGUE.items():
        assert name == metric.name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert metric.help.endswith(".")
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in metric.labels)
        assert metric.kind != Kind.DISTRIBUTION or name.endswith("_seconds")
    for name in ("runner_no_job_exits", "spot_interruptions", "job_reruns", "dead_letters", "queue_time_seconds"):
        assert name in CATALOGUE


def test_samples_are_buffered_until_flush_then_emitted_once_to_every_plugin() -> None:
    first, second = Collector(), Collector()
    backend = _backend(first, second)
    backend.metrics.record("runner_no_job_exits", pool="linux")
    backend.metrics.record("queue_time_seconds", 12.5, pool="linux")
    assert first.batches == [] and len(backend.metrics.pending()) == 2
    assert backend.metrics.flush() == 2
    assert backend.metrics.flush() == 0  # nothing twice, no empty batch
    assert first.batches == second.batches and len(first.batches) == 1
    exits, queued = first.batches[0]
    assert (exits.name, exits.value, exits.labels) == ("runner_no_job_exits", 1.0, (("pool", "linux"),))
    assert (queued.value, queued.metric.kind) == (12.5, Kind.DISTRIBUTION)


def test_immediate_mode_emits_on_every_record() -> None:
    collector = Collector()
    backend = _backend(collector)
    backend.metrics.immediate = True
    backend.metrics.record("dead_letters", queue="jobs")
    assert [[s.name for s in batch] for batch in collector.batches] == [["dead_letters"]]


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("no_such_metric", {}, "unknown metric"),
        ("jobs_routed", {"queue": "jobs"}, "counted from the log line"),
        ("runner_no_job_exits", {}, "takes labels ['pool']"),
        ("runner_no_job_exits", {"pool": "a", "zone": "b"}, "takes labels"),
        ("capacity_errors", {"machine_type": "x", "pool": "y"}, "takes labels"),
    ],
)
def test_a_wrong_name_or_label_set_is_a_clear_error(name: str, labels: dict[str, str], message: str) -> None:
    backend = _backend()
    with pytest.raises(MetricError, match=re.escape(message)):
        backend.metrics.record(name, **labels)
    assert backend.metrics.pending() == ()


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("linux-x64", "linux-x64"),
        ("us-east-1a", "us-east-1a"),
        ("bad\nvalue", "bad_value"),
        ('quote"} 1\n# HELP', "quote___1___HELP"),
        ("", "none"),
        ("x" * 10_000, "x" * 64),
        (None, "None"),
        ("ünïcode", "_n_code"),
    ],
)
def test_label_values_are_sanitised_never_refused(raw: object, safe: str) -> None:
    assert label_value(raw) == safe
    collector = Collector()
    backend = _backend(collector)
    backend.metrics.record("runner_no_job_exits", pool=raw)
    backend.metrics.flush()
    assert collector.batches[0][0].labels == (("pool", safe),)


def test_the_buffer_is_bounded_and_says_what_it_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics, "MAX_BUFFERED", 3)
    collector = Collector()
    backend = _backend(collector)
    for _ in range(5):
        backend.metrics.record("ghosts_removed")
    with caplog.at_level(logging.WARNING, logger="jitr.metrics"):
        assert backend.metrics.flush() == 3
    assert [r.__dict__.get("dropped") for r in caplog.records] == [2]


def test_a_broken_emitter_never_fails_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector()
    backend = _backend(Broken(), collector)
    backend.metrics.record("function_errors", function="scaleup")
    with caplog.at_level(logging.WARNING, logger="jitr.metrics"):
        assert backend.metrics.flush() == 1
    assert any("emitter down" in str(r.__dict__.get("reason")) for r in caplog.records)
