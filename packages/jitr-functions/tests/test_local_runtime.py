"""The embedded runtime behind ``jitr serve``: the webhook endpoint over real HTTP with bad input,
health, and a graceful stop that loses no message."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import pytest
from e2e_support import POOL, QUIET, get, post, record, store_rows, wait_for, webhook_headers
from jitr_core.hookspecs import hookimpl
from jitr_core.messages import LifecycleMessage, encode
from jitr_core.model import QueueMessage
from jitr_core.settings import Settings
from jitr_core.testing.environment import deadline_s
from jitr_functions.local import LocalRuntime

GITHUB_TIMEOUT_S = 10.0  # GitHub gives up on a delivery not answered within 10 s


def _ours(payload: bytes, job_id: int = 4242) -> bytes:
    """A real payload, changed to be a job of the sandbox's pool in a private repository."""
    data = json.loads(payload)
    data["workflow_job"]["labels"] = list(POOL["labels"])
    data["workflow_job"]["id"] = job_id
    data["repository"]["private"] = True
    return json.dumps(data).encode()


@pytest.fixture
def runtime(e2e_sandbox):
    return e2e_sandbox(pools=[POOL], intervals=QUIET)


def _deliver(runtime, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    started = time.monotonic()
    answer = post(runtime.runtime.url + "/webhook", body, headers)
    assert time.monotonic() - started < GITHUB_TIMEOUT_S
    return answer


def test_ping_and_unknown_events_are_acknowledged(runtime, e2e_fixture):
    ping = e2e_fixture("webhooks/ping.payload.json")
    assert _deliver(runtime, ping, webhook_headers(runtime.webhook_secret, ping, "ping")) == (200, {"ignored": "ping"})
    issue = b'{"action": "opened", "issue": {"number": 1}}'
    status, body = _deliver(runtime, issue, webhook_headers(runtime.webhook_secret, issue, "issues"))
    assert status == 200 and body == {"ignored": "issues"}


def test_bad_signatures_are_refused(runtime, e2e_fixture):
    queued = e2e_fixture("webhooks/workflow_job.queued.payload.json")
    assert _deliver(runtime, queued, webhook_headers("not-the-secret", queued))[0] == 401
    assert _deliver(runtime, queued, webhook_headers(None, queued))[0] == 401
    tampered = webhook_headers(runtime.webhook_secret, queued)
    assert _deliver(runtime, queued + b" ", tampered)[0] == 401
    assert runtime.runtime.processed == {"jobs": 0, "lifecycle": 0}
    assert store_rows(runtime, "SELECT count(*) FROM messages") == [(0,)]


def test_bodies_that_are_not_json_or_too_large_are_refused(runtime):
    junk = b"this is not json"
    status, body = _deliver(runtime, junk, webhook_headers(runtime.webhook_secret, junk))
    assert status == 400 and "JSON" in body["error"]
    status, _ = _deliver(
        runtime,
        b"{}",
        {**webhook_headers(runtime.webhook_secret, b"{}"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415

    limit = runtime.app.settings.max_body_bytes
    parts = urlsplit(runtime.runtime.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=GITHUB_TIMEOUT_S)
    started = time.monotonic()
    conn.putrequest("POST", "/webhook")
    for name, value in webhook_headers(runtime.webhook_secret, b"").items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(limit + 1))
    conn.endheaders()  # the body is never sent: the answer must not wait for it
    response = conn.getresponse()
    assert response.status == 413 and "exceeds" in json.loads(response.read())["error"]
    assert time.monotonic() - started < GITHUB_TIMEOUT_S
    conn.close()
    assert store_rows(runtime, "SELECT count(*) FROM messages") == [(0,)]


def test_a_real_delivery_is_queued_and_health_answers(runtime, e2e_fixture):
    body = _ours(e2e_fixture("webhooks/workflow_job.queued.payload.json"))
    headers = webhook_headers(runtime.webhook_secret, body)
    assert _deliver(runtime, body, headers) == (202, {"queued": "jobs"})
    assert _deliver(runtime, body, headers) == (202, {"queued": "jobs"})  # a duplicate: scaleup's claim dedupes
    assert get(runtime.runtime.url + "/healthz") == (200, {"status": "ok"})
    assert get(runtime.runtime.url + "/nowhere")[0] == 404
    # deliveries are taken at /webhook only
    other = _ours(e2e_fixture("webhooks/workflow_job.queued.payload.json"), job_id=4343)
    assert post(runtime.runtime.url + "/", other, webhook_headers(runtime.webhook_secret, other))[0] == 404
    assert post(runtime.runtime.url + "/hooks", other, webhook_headers(runtime.webhook_secret, other))[0] == 404
    bodies = store_rows(runtime, "SELECT body FROM messages UNION ALL SELECT body FROM dead_letters")
    assert 4343 not in {json.loads(b)["job_id"] for (b,) in bodies}


class HoldJobLoads:
    """Holds a lifecycle worker inside its first load of one job record until released."""

    def __init__(self, job_id: int) -> None:
        self.key = str(job_id)
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl(tryfirst=True)
    def jitr_load_record(self, kind: str, key: str, settings: Settings) -> None:
        if kind == "job" and key == self.key and not self.release.is_set():
            self.entered.set()
            self.release.wait(30)


def _in_progress(job_id: int) -> str:
    return encode(
        LifecycleMessage(
            action="in_progress",
            job_id=job_id,
            run_id=1,
            repository="octo-org/api",
            owner="octo-org",
            installation_id=None,
            labels=tuple(POOL["labels"]),
        )
    ).body


def test_stop_finishes_the_message_in_hand_and_leaves_the_rest_queued(e2e_sandbox):
    hold = HoldJobLoads(501)
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, workers=1, extra_plugins=[("e2e-hold", hold)])
    backend = sandbox.app.backend
    backend.enqueue("lifecycle", QueueMessage(_in_progress(501)))
    assert hold.entered.wait(deadline_s(60)), "the worker never took the message"
    # not yet visible when the stop begins, so still queued when it ends
    backend.enqueue("lifecycle", QueueMessage(_in_progress(502)), delay_s=4)

    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (sandbox.runtime.stop(timeout_s=60), stopped.set()))
    stopper.start()
    time.sleep(0.3)
    assert not stopped.is_set(), "stop returned while a message was in hand"
    hold.release.set()
    stopper.join(deadline_s(60))

    assert stopped.is_set()
    assert record(sandbox, "job", 501).state == "running"  # finished and acknowledged
    assert record(sandbox, "job", 502) is None
    assert [json.loads(b)["job_id"] for (b,) in store_rows(sandbox, "SELECT body FROM messages")] == [502]

    restarted = LocalRuntime(sandbox.app, port=0, workers=1, intervals=QUIET).start()
    try:
        wait_for(
            lambda: (r := record(sandbox, "job", 502)) is not None and r.state == "running",
            60,
            "the queued message to be handled after the restart",
        )
    finally:
        restarted.stop(timeout_s=10)
    assert store_rows(sandbox, "SELECT count(*) FROM messages") == [(0,)]
