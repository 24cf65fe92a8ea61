"""Poison messages: malformed queue messages are dead-lettered at once with the reason, and the
workers go on with the next message."""

from __future__ import annotations

import json

from e2e_support import POOL, QUIET, dead_letters, queue_jobs, wait_completed, wait_for, webhook_headers
from jitr_core.messages import JobMessage, LifecycleMessage, encode
from jitr_core.model import QueueMessage

JOB = encode(
    JobMessage(
        job_id=41,
        run_id=7,
        repository="octo-org/api",
        owner="octo-org",
        installation_id=1,
        labels=("self-hosted", "linux"),
        private=True,
    )
)
LIFECYCLE = encode(
    LifecycleMessage(
        action="completed",
        job_id=41,
        run_id=7,
        repository="octo-org/api",
        owner="octo-org",
        installation_id=1,
        labels=("self-hosted",),
        runner_name="x",
    )
)


def _edit(message: QueueMessage, **changes: object) -> str:
    data = json.loads(message.body)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data)


POISON = {
    "jobs": {
        "not JSON": "{not json",
        "not an object": "[1, 2, 3]",
        "unknown version": _edit(JOB, v=2),
        "unknown type": _edit(JOB, type="workflow"),
        "lifecycle on the jobs queue": LIFECYCLE.body,
        "missing job id": _edit(JOB, job_id=None),
        "negative job id": _edit(JOB, job_id=-5),
        "labels not a list": _edit(JOB, labels="self-hosted"),
        "oversized string": _edit(JOB, repository="o/" + "r" * 600),
        "nested too deeply": "[" * 100_000,
        "job id beyond 64 bits": _edit(JOB, job_id=2**64),
    },
    "lifecycle": {
        "not JSON": "\x00\ufffd garbage",
        "job on the lifecycle queue": JOB.body,
        "unknown action": _edit(LIFECYCLE, action="requested"),
        "runner id a string": _edit(LIFECYCLE, runner_id="seven"),
    },
}


def test_poison_messages_are_dead_lettered_and_workers_keep_going(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    backend = sandbox.app.backend
    for queue, bodies in POISON.items():
        for body in bodies.values():
            backend.enqueue(queue, QueueMessage(body))

    jobs = queue_jobs(sandbox, 3)  # real work after the poison
    wait_completed(sandbox, jobs, 60)

    for queue, bodies in POISON.items():
        wanted = len(bodies)
        letters = wait_for(
            lambda q=queue, n=wanted: len(found := dead_letters(sandbox, q)) == n and found,
            60,
            f"{wanted} dead letters on {queue}",
        )
        assert all(reason for _, reason in letters), letters
        # each poison message is buried once, at its first delivery, not after the receive limit
        assert not any("max_receive_count" in reason for _, reason in letters), letters
    reasons = {reason for _, reason in dead_letters(sandbox, "jobs")}
    assert any("not JSON" in r for r in reasons) and any("version" in r for r in reasons), reasons
    assert any("lifecycle message" in r for r in reasons), reasons
    assert any("action" in r for _, r in dead_letters(sandbox, "lifecycle"))
    assert sandbox.runtime.processed["jobs"] >= len(POISON["jobs"]) + len(jobs)


def test_the_webhook_service_answers_hostile_deliveries_with_4xx(e2e_sandbox):
    """What ``jitr serve`` answers: the service its server hands every delivery to."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    nested = b"[" * 100_000
    bad_signature = {**webhook_headers(sandbox.webhook_secret, b"{}"), "X-Hub-Signature-256": "sha256=" + "\u00e9" * 64}

    non_ascii = sandbox.app.webhook.handle(bad_signature, b"{}")
    deep = sandbox.app.webhook.handle(webhook_headers(sandbox.webhook_secret, nested), nested)

    assert (non_ascii.status, deep.status) == (401, 400)
    assert "too deeply" in deep.body["error"]
