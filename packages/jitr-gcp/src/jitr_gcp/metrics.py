"""jitr's metrics on GCP: one structured log entry per sample, read by log-based metrics.

A Cloud Run function's JSON lines on stdout become log entries whose fields are the
``jsonPayload``; the log-based metrics the GCP IaC defines select ``jsonPayload.metric`` (and
``logger = jitr.metrics``), count the entries of a counter, extract ``jsonPayload.value`` for a
distribution or gauge, and take each label from the field of its name. A batch (one request's
samples) is written at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from jitr_core.metrics import Sample

LOGGER = "jitr.metrics"


def entries(samples: Sequence[Sample]) -> Iterator[str]:
    """One JSON line per sample: ``metric``, ``value`` and one field per label."""
    for sample in samples:
        entry: dict[str, Any] = {
            "severity": "INFO",
            "logger": LOGGER,
            "message": f"metric {sample.name}",
            "metric": sample.name,
            "value": sample.value,
            **dict(sample.labels),
        }
        yield json.dumps(entry, separators=(",", ":"))


def write_entries(samples: Sequence[Sample], stream: IO[str] | None = None) -> None:
    """Write ``samples`` to ``stream`` (the function's stdout) in one write."""
    out = sys.stdout if stream is None else stream
    out.write("".join(line + "\n" for line in entries(samples)))
    out.flush()
