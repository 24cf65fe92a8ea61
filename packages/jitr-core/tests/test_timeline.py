"""Job timelines stay bounded, and messages written before a field existed still decode."""

from __future__ import annotations

import json

from jitr_core.messages import JobMessage, LifecycleMessage, decode
from jitr_core.services.records import TIMELINE_MAX, new_job_data, step, with_steps
from jitr_core.services.stats import percentiles


def test_a_message_without_received_at_or_reason_decodes_with_the_defaults() -> None:
    old = {
        "v": 1,
        "type": "job",
        "job_id": 7,
        "run_id": 8,
        "repository": "o/r",
        "owner": "o",
        "installation_id": 5,
        "labels": ["self-hosted"],
        "private": False,
        "attempt": 2,
    }
    message = decode(json.dumps(old))
    assert isinstance(message, JobMessage)
    assert (message.received_at, message.reason, message.delivery_id) == (0.0, "webhook", "")
    data = new_job_data(message, private=False, attempt=2)
    assert data["timeline"] == [{"t": 0.0, "event": "received", "via": "webhook"}]

    lifecycle = {k: v for k, v in old.items() if k not in ("private", "attempt")} | {"type": "lifecycle"}
    decoded = decode(json.dumps({**lifecycle, "action": "in_progress"}))
    assert isinstance(decoded, LifecycleMessage) and decoded.received_at == 0.0
    assert new_job_data(decoded, private=True, attempt=1)["timeline"][0]["via"] == "in_progress"


def test_the_timeline_keeps_the_newest_entries_and_counts_the_dropped() -> None:
    data: dict[str, object] = {}
    for i in range(TIMELINE_MAX + 5):
        data.update(with_steps(data, step("requeued", float(i), reason="r")))
    timeline = data["timeline"]
    assert isinstance(timeline, list) and len(timeline) == TIMELINE_MAX
    assert timeline[0]["t"] == 5.0 and timeline[-1]["t"] == float(TIMELINE_MAX + 4)
    assert data["timeline_dropped"] == 5


def test_a_step_leaves_out_missing_facts_and_bounds_strings() -> None:
    entry = step("launch", 1.23456, candidate="x" * 1000, code=None, outcome="no-capacity")
    assert entry == {"t": 1.235, "event": "launch", "candidate": "x" * 200, "outcome": "no-capacity"}


def test_percentiles_by_nearest_rank() -> None:
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    assert percentiles(float(v) for v in range(1, 101)) == {"p50": 51.0, "p95": 95.0, "p99": 99.0}
