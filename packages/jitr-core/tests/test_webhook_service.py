"""The webhook service on the real embedded backend: what it admits, what it costs in backend calls."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.messages import decode
from jitr_core.model import RecordQuery
from jitr_core.plugins import create_plugin_manager
from jitr_core.services import WebhookService
from jitr_core.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "test-webhook-secret-0123"
LABELS = ["self-hosted", "linux", "x64"]
POOL = {"name": "linux", "labels": LABELS, "machine_types": ["m"]}


class Recorder:
    """Every provider hook call the service makes, by hook name (the backend's real work runs)."""

    def __init__(self, backend: Backend) -> None:
        self.calls: list[str] = []
        self._undo = backend.pm.add_hookcall_monitoring(lambda name, *_: self.calls.append(name), lambda *a: None)

    def close(self) -> None:
        self._undo()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[WebhookService, Recorder]]:
    (tmp_path / "secret").write_text(SECRET)
    settings = Settings.from_mapping(
        {
            "provider": "embedded",
            "secrets": {"webhook_secret": f"file:{tmp_path / 'secret'}"},
            "embedded": {"state_dir": str(tmp_path / "state")},
            "pools": [POOL],
            "allowed_owners": ["octo-org"],
        }
    )
    backend = Backend(create_plugin_manager(load_entry_points=False, environ={}), settings)
    webhook = WebhookService(backend)
    webhook.handle(delivery(b"{}", "ping"), b"{}")  # the secret is read (and cached) once, not per delivery
    recorder = Recorder(backend)
    yield webhook, recorder
    recorder.close()


def delivery(body: bytes, event: str = "workflow_job", guid: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


def job(
    action: str, labels: list[str], owner: str = "octo-org", private: bool = True, runner: str | None = None
) -> bytes:
    data: dict[str, Any] = json.loads((FIXTURES / "queued.payload.json").read_text())
    data["action"] = action
    data["workflow_job"].update(status=action, labels=labels, runner_name=runner, runner_id=7 if runner else None)
    data["repository"].update(full_name=f"{owner}/api", private=private)
    data["repository"]["owner"]["login"] = owner
    return json.dumps(data).encode()


IGNORED = [
    pytest.param(["ubuntu-latest"], "octo-org", True, id="github-hosted labels"),
    pytest.param(["self-hosted", "gpu"], "octo-org", True, id="labels no pool has"),
    pytest.param(LABELS, "mona", True, id="owner not allowed"),
    pytest.param(LABELS, "octo-org", False, id="public repository"),
]


@pytest.mark.parametrize(("labels", "owner", "private"), IGNORED)
def test_a_queued_job_jitr_does_not_serve_costs_no_store_or_queue_call(
    service: tuple[WebhookService, Recorder], labels: list[str], owner: str, private: bool
) -> None:
    webhook, recorder = service
    body = job("queued", labels, owner, private)

    answer = webhook.handle(delivery(body), body)

    assert answer.status == 200 and answer.body["ignored"], answer
    assert recorder.calls == []


@pytest.mark.parametrize("action", ["in_progress", "completed"])
def test_lifecycle_events_of_jobs_no_pool_serves_cost_nothing(
    service: tuple[WebhookService, Recorder], action: str
) -> None:
    webhook, recorder = service
    for labels, runner in (
        (["ubuntu-latest"], "GitHub Actions 7"),
        (["self-hosted", "gpu"], "gpu-box-1"),
        (["windows"], None),
    ):
        body = job(action, labels, runner=runner)
        answer = webhook.handle(delivery(body), body)
        assert answer.status == 200 and "no pool serves" in answer.body["ignored"], answer
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("labels", "owner", "runner"),
    [
        pytest.param(LABELS, "octo-org", "jitr-linux-1-1", id="a pool serves the labels"),
        pytest.param(LABELS, "mona", "jitr-linux-1-1", id="not admitted, but a pool's runner may have taken it"),
        pytest.param(["linux"], "octo-org", "jitr-linux-1-1", id="no self-hosted label, taken by a jitr runner"),
    ],
)
def test_lifecycle_events_jitr_could_own_are_one_enqueue(
    service: tuple[WebhookService, Recorder], labels: list[str], owner: str, runner: str
) -> None:
    webhook, recorder = service
    body = job("completed", labels, owner, runner=runner)

    answer = webhook.handle(delivery(body), body)

    assert (answer.status, dict(answer.body)) == (202, {"queued": "lifecycle"})
    assert recorder.calls == ["jitr_enqueue"]


def test_a_routed_delivery_is_one_enqueue_and_a_duplicate_is_passed_on(
    service: tuple[WebhookService, Recorder],
) -> None:
    """No delivery record: scaleup's claim on (job, attempt) makes the second copy harmless."""
    webhook, recorder = service
    body = job("queued", LABELS)
    headers = delivery(body)

    answers = [webhook.handle(headers, body) for _ in range(2)]

    assert [(a.status, dict(a.body)) for a in answers] == [(202, {"queued": "jobs"})] * 2
    assert recorder.calls == ["jitr_enqueue", "jitr_enqueue"]
    messages = webhook.backend.receive("jobs", 10)
    assert [decode(m.body).delivery_id for m in messages] == [headers["X-GitHub-Delivery"]] * 2
    assert list(webhook.backend.query_all(RecordQuery("delivery", "seen"))) == []


def test_the_retired_delivery_ttl_setting_is_accepted_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="JITR_DELIVERY_TTL_S is no longer used"):
        settings = Settings.from_env({"JITR_DELIVERY_TTL_S": "60"})
    assert not hasattr(settings, "delivery_ttl_s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Settings.from_mapping({"finished_ttl_s": 600})  # nothing to say without it
