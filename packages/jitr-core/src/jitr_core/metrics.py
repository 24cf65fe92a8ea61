"""jitr's metrics: the one catalogue of names, kinds and labels, and the recorder services call.

A service records a sample with ``backend.metrics.record("runner_no_job_exits", pool=name)``
(a counter; the value defaults to 1) or ``backend.metrics.record("queue_time_seconds", 12.3,
pool=name)`` (a distribution). Recording only appends to a buffer: it costs no I/O and never
raises for a label value. The runtime flushes the buffer once per invocation (Lambda, Cloud Run)
or at once (``jitr serve``) through :func:`~jitr_core.hookspecs.jitr_emit_metrics`, which each
backend implements in its own form (CloudWatch EMF lines, structured log entries, Prometheus).

:data:`CATALOGUE` is the single source of truth: the IaC's metric definitions and the docs are
checked against it. Names carry no prefix and no unit suffix beyond the one in the name; each
backend adds its own (``jitr_`` for Prometheus, the ``jitr`` CloudWatch namespace).

Metrics whose ``log_message`` is set are not recorded here: they count a log line that exists
already (the webhook's delivery line), so the hot path writes nothing more. AWS metric filters
and GCP log-based metrics read that line; ``jitr serve`` counts the deliveries it answers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger("jitr.metrics")

MAX_BUFFERED = 2000  # samples kept between flushes; more are dropped (and counted) rather than grown
MAX_LABEL_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+=-]")


class Kind(StrEnum):
    COUNTER = "counter"  # a count of events; samples add up
    DISTRIBUTION = "distribution"  # one observation each (a duration); read as percentiles/histogram
    GAUGE = "gauge"  # the latest value wins


@dataclass(frozen=True, slots=True)
class Metric:
    """One catalogue entry."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    unit: str = "Count"  # the CloudWatch unit: Count, Seconds, None
    log_message: str = ""  # counted from this existing line of DELIVERY_LOGGER instead of recorded


DELIVERY_LOGGER = "jitr.webhook"  # the logger whose lines the log-counted metrics read

CATALOGUE: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "jobs_routed",
            Kind.COUNTER,
            ("queue",),
            "Webhook deliveries of a job jitr serves, put on the jobs or lifecycle queue.",
            log_message="routed",
        ),
        Metric(
            "jobs_ignored",
            Kind.COUNTER,
            (),
            "Webhook deliveries of a job jitr leaves alone (no pool, owner or repository not allowed).",
            log_message="job ignored",
        ),
        Metric(
            "deliveries_rejected",
            Kind.COUNTER,
            (),
            "Webhook deliveries refused (bad signature, malformed or oversized body).",
            log_message="rejected delivery",
        ),
        Metric("jobs_received", Kind.COUNTER, ("pool",), "Queued jobs scaleup took on (first message of a job)."),
        Metric("jobs_launched", Kind.COUNTER, ("pool", "market"), "Runners launched for a job (spot or on_demand)."),
        Metric("jobs_completed", Kind.COUNTER, ("pool", "conclusion"), "Jobs jitr served that completed."),
        Metric(
            "queue_time_seconds",
            Kind.DISTRIBUTION,
            ("pool",),
            "From the job queued to in_progress on a jitr runner.",
            unit="Seconds",
        ),
        Metric(
            "boot_time_seconds",
            Kind.DISTRIBUTION,
            ("pool",),
            "From the VM launched to its runner taking the job (in_progress).",
            unit="Seconds",
        ),
        Metric(
            "launch_attempts",
            Kind.COUNTER,
            ("pool", "machine_type", "placement", "market"),
            "Calls to start a VM, one per candidate tried.",
        ),
        Metric(
            "launch_failures",
            Kind.COUNTER,
            ("pool", "reason", "placement"),
            "Candidates that did not start (reason: capacity, error).",
        ),
        Metric(
            "capacity_errors",
            Kind.COUNTER,
            ("machine_type", "zone"),
            "Launches refused for capacity or quota, by machine type and zone/region.",
        ),
        Metric("runner_no_job_exits", Kind.COUNTER, ("pool",), "Runners that exited without taking a job."),
        Metric("spot_interruptions", Kind.COUNTER, ("pool",), "Spot VMs the cloud reclaimed or warned of reclaiming."),
        Metric("job_reruns", Kind.COUNTER, ("pool",), "Jobs jitr asked GitHub to re-run after an interruption."),
        Metric(
            "runners_retired",
            Kind.COUNTER,
            ("pool", "reason"),
            "Runners jitr removed before they finished a job (VM gone, never online, surplus, lifetime).",
        ),
        Metric("ghosts_removed", Kind.COUNTER, (), "GitHub runners of jitr's with no VM that scaledown deregistered."),
        Metric("orphans_removed", Kind.COUNTER, ("pool",), "VMs scaledown deleted that no runner record owns."),
        Metric("dead_letters", Kind.COUNTER, ("queue",), "Messages put in a dead-letter queue by jitr."),
        Metric(
            "github_rate_limit_remaining",
            Kind.GAUGE,
            (),
            "The fewest GitHub API requests left in any window jitr uses (x-ratelimit-remaining).",
            unit="None",
        ),
        Metric("function_errors", Kind.COUNTER, ("function",), "Invocations of a function that ended in an error."),
    )
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One recorded value: a catalogue name, its value and its labels (sanitised, in catalogue order)."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...]
    at: float

    @property
    def metric(self) -> Metric:
        return CATALOGUE[self.name]


class MetricError(ValueError):
    """A sample that names no catalogue metric or the wrong labels (a programming error)."""


def label_value(value: object) -> str:
    """A label value safe in every output: at most 64 characters of ``[A-Za-z0-9._:/@+=-]``.

    Anything else (a newline, a quote, a space) becomes ``_``; an empty value becomes ``none``.
    """
    text = _UNSAFE.sub("_", str(value)[:MAX_LABEL_CHARS])
    return text or "none"


class Metrics:
    """A buffer of samples, emitted through ``emit`` (the hook's caller) on :meth:`flush`."""

    def __init__(
        self,
        emit: Callable[[Sequence[Sample]], object],
        clock: Callable[[], float] = time.time,
        immediate: bool = False,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._buffer: list[Sample] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self.immediate = immediate  # flush on every record (a long-running process such as ``jitr serve``)

    def record(self, name: str, value: float = 1.0, /, **labels: object) -> None:
        """Buffer one sample of catalogue metric ``name`` with exactly its labels.

        :raises MetricError: ``name`` is not in the catalogue, is counted from a log line, or the
            label names differ from the catalogue's. Label *values* are sanitised, never refused.
        """
        metric = CATALOGUE.get(name)
        if metric is None:
            raise MetricError(f"unknown metric {name!r}; the catalogue has {sorted(CATALOGUE)}")
        if metric.log_message:
            raise MetricError(f"metric {name!r} is counted from the log line {metric.log_message!r}")
        if len(labels) != len(metric.labels) or not all(key in labels for key in metric.labels):
            raise MetricError(f"metric {name!r} takes labels {list(metric.labels)}, found {sorted(labels)}")
        sample = Sample(name, float(value), tuple((k, label_value(labels[k])) for k in metric.labels), self._clock())
        with self._lock:
            if len(self._buffer) >= MAX_BUFFERED:
                self._dropped += 1
            else:
                self._buffer.append(sample)
        if self.immediate:
            self.flush()

    def pending(self) -> tuple[Sample, ...]:
        """The samples recorded since the last flush."""
        with self._lock:
            return tuple(self._buffer)

    def flush(self) -> int:
        """Emit every buffered sample at once; returns how many. Never raises: a broken emitter is logged."""
        with self._lock:
            samples, self._buffer = self._buffer, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("metric samples dropped: too many between flushes", extra={"dropped": dropped})
        if not samples:
            return 0
        try:
            self._emit(samples)
        except Exception as exc:  # metrics must never fail the work they describe
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("metrics not emitted", extra={"samples": len(samples), "reason": reason})
        return len(samples)
