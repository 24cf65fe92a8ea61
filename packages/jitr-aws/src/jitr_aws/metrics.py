"""jitr's metrics on AWS: CloudWatch Embedded Metric Format lines, written to the Lambda's log.

CloudWatch Logs turns each EMF line into metric data points in the deployment's namespace
(``[aws] metrics_namespace``, ``jitr`` unless set), with no extra dependency and no API call. A
batch (one invocation's samples) becomes one line per label set: every metric sharing those
dimensions goes in that line, counters summed, a distribution's observations as a value array
(at most 100 per line, as EMF allows), a gauge's last value.
Each labelled metric is also published without dimensions, the total over its label sets, which
the alarms watch whatever the pools are called.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from jitr_core.metrics import CATALOGUE, Kind, Sample

from .config import METRICS_NAMESPACE

MAX_VALUES = 100  # EMF: at most 100 values in one metric's array


def emf_lines(samples: Sequence[Sample], namespace: str = METRICS_NAMESPACE) -> Iterator[str]:
    """The EMF lines for ``samples``: one per label set (and per hundred observations of a distribution)."""
    groups: dict[tuple[tuple[str, str], ...], dict[str, list[float]]] = {}
    at: dict[tuple[tuple[str, str], ...], float] = {}
    for sample in samples:
        values = groups.setdefault(sample.labels, {}).setdefault(sample.name, [])
        at[sample.labels] = max(at.get(sample.labels, 0.0), sample.at)
        kind = sample.metric.kind
        if kind is Kind.COUNTER:
            values[:] = [(values[0] if values else 0.0) + sample.value]
        elif kind is Kind.GAUGE:
            values[:] = [sample.value]
        else:
            values.append(sample.value)
    for labels, metrics in groups.items():
        chunk = 0
        while True:
            part = {name: values[chunk : chunk + MAX_VALUES] for name, values in metrics.items()}
            part = {name: values for name, values in part.items() if values}
            if not part:
                break
            yield _line(namespace, labels, part, at[labels])
            chunk += MAX_VALUES


def _line(namespace: str, labels: tuple[tuple[str, str], ...], metrics: dict[str, list[float]], at: float) -> str:
    entry: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(at * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[key for key, _ in labels], []] if labels else [[]],
                    "Metrics": [{"Name": name, "Unit": CATALOGUE[name].unit} for name in metrics],
                }
            ],
        },
        **dict(labels),
    }
    for name, values in metrics.items():
        entry[name] = values[0] if len(values) == 1 else values
    return json.dumps(entry, separators=(",", ":"))


def write_emf(samples: Sequence[Sample], stream: IO[str] | None = None, namespace: str = METRICS_NAMESPACE) -> None:
    """Write ``samples`` as EMF lines to ``stream`` (the Lambda's stdout) in one write."""
    out = sys.stdout if stream is None else stream
    out.write("".join(line + "\n" for line in emf_lines(samples, namespace)))
    out.flush()
