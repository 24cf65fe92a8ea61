"""``jitr serve``'s metrics: the catalogue as Prometheus metrics, served at ``GET /metrics``.

:class:`PrometheusMetrics` is a plugin the serve runtime registers: its ``jitr_emit_metrics``
adds each sample to a registry of its own (``jitr_<name>``; counters gain ``_total``,
distributions are histograms). The metrics counted from the webhook's delivery line on the
clouds are counted here from the answer the server gives, one increment per delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import CATALOGUE, Kind, Sample, label_value
from jitr_core.settings import Settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "jitr_"
# seconds: a VM boots in tens of seconds, a job may wait for capacity for many minutes
BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_Family = Counter | Histogram | Gauge


class PrometheusMetrics:
    """A registry with one family per catalogue metric, fed by the hook and by delivery answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.families: dict[str, _Family] = {}
        for metric in CATALOGUE.values():
            name, labels = PREFIX + metric.name, metric.labels
            family: _Family
            if metric.kind is Kind.COUNTER:
                family = Counter(name, metric.help, labels, registry=self.registry)
            elif metric.kind is Kind.DISTRIBUTION:
                family = Histogram(name, metric.help, labels, registry=self.registry, buckets=BUCKETS_S)
            else:
                family = Gauge(name, metric.help, labels, registry=self.registry)
            self.families[metric.name] = family

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        for sample in samples:
            self._add(sample.name, sample.value, dict(sample.labels))

    def count_delivery(self, headers: Mapping[str, str], status: int, body: Mapping[str, object]) -> None:
        """Count one webhook delivery by its answer, as the clouds count the delivery's log line."""
        if status == 202:
            self._add("jobs_routed", 1.0, {"queue": label_value(body.get("queued", ""))})
        elif status == 200 and "ignored" in body and headers.get("x-github-event") == "workflow_job":
            self._add("jobs_ignored", 1.0, {})
        elif 400 <= status < 500:
            self._add("deliveries_rejected", 1.0, {})

    def render(self) -> bytes:
        """The text exposition format of every family."""
        return generate_latest(self.registry)

    def _add(self, name: str, value: float, labels: dict[str, str]) -> None:
        family = self.families[name]
        child = family.labels(**labels) if labels else family
        if isinstance(child, Counter):
            child.inc(value)
        elif isinstance(child, Histogram):
            child.observe(value)
        else:
            child.set(value)
