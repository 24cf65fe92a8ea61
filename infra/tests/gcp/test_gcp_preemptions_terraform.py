"""GCE preemptions reach the lifecycle topic through a log sink, with no permission for the runner VMs.

The sink's filter is checked against a real ``compute.instances.preempted`` LogEntry (the
fixture jitr-core's parser is tested with): it selects a jitr runner's preemption and nothing
else; the topic grant goes to the sink's own writer identity.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from gcp_iac_terraform import MODULE, ROOT, resources, unquote

ENTRY = ROOT / "packages" / "jitr-core" / "tests" / "fixtures" / "interruptions" / "gce-preempted-log-entry.json"
PROJECT = "my-project"
_CLAUSE = re.compile(r'^([A-Za-z.]+)(=|:)"(.*)"$')


def filter_clauses(path: Path = MODULE / "interruptions.tf") -> list[str]:
    """The ANDed clauses of the sink's filter, as Terraform renders them for ``PROJECT``."""
    text = path.read_text()
    body = text[text.index('filter = join(" AND ", [') : text.index("])", text.index("filter = join"))]
    clauses = [json.loads(line.strip().rstrip(",")) for line in body.splitlines()[1:] if line.strip()]
    return [clause.replace("${var.project_id}", PROJECT) for clause in clauses]


def matches(entry: dict[str, Any], clauses: list[str]) -> bool:
    """Cloud Logging's ``field="value"`` (equals) and ``field:"value"`` (has), the two forms the filter uses."""
    for clause in clauses:
        found = _CLAUSE.match(clause)
        assert found, f"the test reads only = and : clauses, found {clause!r}"
        path, operator, wanted = found.groups()
        value: Any = entry
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or (value != wanted if operator == "=" else wanted not in value):
            return False
    return True


def entry(**payload: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ENTRY.read_text())
    loaded["protoPayload"].update(payload)
    return loaded


def test_the_sink_selects_a_runners_preemption() -> None:
    assert matches(entry(), filter_clauses())


@pytest.mark.parametrize(
    "other",
    [
        {"methodName": "v1.compute.instances.delete"},
        {"resourceName": f"projects/{PROJECT}/zones/us-central1-a/instances/database-1"},
    ],
    ids=["another-event", "not-a-runner"],
)
def test_the_sink_selects_nothing_else(other: dict[str, str]) -> None:
    assert not matches(entry(**other), filter_clauses())


def test_the_sink_publishes_to_the_lifecycle_topic_as_its_own_identity() -> None:
    found = resources()
    sink = found[("google_logging_project_sink", "preemptions")]
    assert unquote(sink["destination"]) == 'pubsub.googleapis.com/${google_pubsub_topic.queue["lifecycle"].id}'
    assert sink["unique_writer_identity"] is True
    grant = found[("google_pubsub_topic_iam_member", "preemption_sink")]
    assert grant["topic"] == '${google_pubsub_topic.queue["lifecycle"].name}'
    assert unquote(grant["role"]) == "roles/pubsub.publisher"
    assert grant["member"] == "${google_logging_project_sink.preemptions.writer_identity}"
    runner_bindings = [key for key, body in found.items() if "runner" in str(body.get("member", ""))]
    assert ("google_pubsub_topic_iam_member", "preemption_sink") not in runner_bindings
