"""Every plugin's ``jitr_emit_metrics`` gets every batch: one exporter that raises (its agent down)
is logged with its name and silences none of the others, whatever the order pluggy calls them in."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence

import pytest
from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import Sample
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings

SETTINGS = Settings.from_mapping({"provider": "embedded"})


class Collector:
    """An exporter that keeps the names of the samples of every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        self.batches.append([sample.name for sample in samples])


class SamplesOnly:
    """An exporter that takes only the samples, as pluggy allows."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample]) -> None:
        self.batches.append(len(samples))


class AgentDown:
    """A third-party exporter whose agent refuses connections."""

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        raise ConnectionRefusedError("agent at 127.0.0.1:8125 refused")


class Timing:
    """A plugin wrapping the hook: it sees each plugin's call."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> Generator[None, object, object]:
        self.calls += 1
        return (yield)


def _backend(*plugins: tuple[str, object]) -> Backend:
    return Backend(create_plugin_manager(load_entry_points=False, environ={}, extra=plugins), SETTINGS)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[object, object, object]]:
    return [
        (r.__dict__.get("plugin"), r.__dict__.get("samples"), r.__dict__.get("reason"))
        for r in caplog.records
        if r.name == "jitr.metrics" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("order", ["raising-called-first", "raising-called-last"])
def test_an_exporter_that_raises_is_named_and_the_others_get_the_batch(
    order: str, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Collector(), SamplesOnly()
    # pluggy calls the last registered first
    plugins = [("before", before), ("statsd", AgentDown()), ("after", after)]
    backend = _backend(*(plugins if order == "raising-called-first" else plugins[::-1]))
    backend.metrics.record("jobs_received", pool="linux")
    backend.metrics.record("dead_letters", queue="jobs")
    with caplog.at_level(logging.WARNING, logger="jitr.metrics"):
        assert backend.metrics.flush() == 2
    assert before.batches == [["jobs_received", "dead_letters"]]
    assert after.batches == [2]
    assert _warnings(caplog) == [("statsd", 2, "ConnectionRefusedError: agent at 127.0.0.1:8125 refused")]


def test_an_exporter_registered_later_gets_the_next_batches(caplog: pytest.LogCaptureFixture) -> None:
    first, late = Collector(), Collector()
    backend = _backend(("first", first))
    backend.metrics.record("jobs_received", pool="linux")
    backend.metrics.flush()
    backend.pm.register(late, "late")
    backend.pm.register(AgentDown(), "statsd")
    backend.metrics.record("ghosts_removed")
    with caplog.at_level(logging.WARNING, logger="jitr.metrics"):
        backend.metrics.flush()
    assert first.batches == [["jobs_received"], ["ghosts_removed"]]
    assert late.batches == [["ghosts_removed"]]
    assert [plugin for plugin, _, _ in _warnings(caplog)] == ["statsd"]


def test_wrapped_and_monitored_calls_are_isolated_too(caplog: pytest.LogCaptureFixture) -> None:
    collector, timing = Collector(), Timing()
    backend = _backend(("collector", collector), ("statsd", AgentDown()), ("timing", timing))
    seen: list[list[str]] = []
    undo = backend.pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: seen.append([impl.plugin_name for impl in impls]), lambda *a: None
    )
    try:
        backend.metrics.record("jobs_received", pool="linux")
        with caplog.at_level(logging.WARNING, logger="jitr.metrics"):
            assert backend.metrics.flush() == 1
    finally:
        undo()
    assert collector.batches == [["jobs_received"]]
    assert timing.calls == 2  # once around each exporter
    assert sorted(seen) == [["collector", "timing"], ["statsd", "timing"]]
    assert [plugin for plugin, _, _ in _warnings(caplog)] == ["statsd"]
