"""Pub/Sub specifics beyond the contract, on the emulator: counting without a dead-letter policy,
dead-letter attributes, receipts, and the provider switch."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from google.cloud import pubsub_v1
from jitr_core.backend import Backend
from jitr_core.errors import SettingsError
from jitr_core.model import QueueMessage, ReceivedMessage
from jitr_core.testing.environment import deadline_s, wait_until
from jitr_gcp.pubsub import DEAD_LETTER_COUNT, DEAD_LETTER_REASON, DEAD_LETTER_SUBSCRIPTION, NOT_BEFORE
from jitr_gcp.testing.backend import PROJECT, gcp_backend, gcp_settings, queue_names
from jitr_gcp.testing.emulators import Emulator


def _until(receive: Callable[[], list[ReceivedMessage]], body: str, timeout_s: float = 60) -> ReceivedMessage:
    def arrived() -> ReceivedMessage | None:
        return next((message for message in receive() if message.body == body), None)

    return wait_until(arrived, timeout_s, f"{body} to arrive", step_s=0)


def test_without_a_dead_letter_policy_deliveries_are_counted_here(pubsub_emulator: Emulator) -> None:
    names = queue_names()
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in ("jobs_topic", "jobs_dead_letter_topic"):
        publisher.create_topic(name=f"projects/{PROJECT}/topics/{names[topic]}")
    for sub, topic in (
        ("jobs_subscription", "jobs_topic"),
        ("jobs_dead_letter_subscription", "jobs_dead_letter_topic"),
    ):
        subscriber.create_subscription(
            name=f"projects/{PROJECT}/subscriptions/{names[sub]}", topic=f"projects/{PROJECT}/topics/{names[topic]}"
        )
    backend = gcp_backend(gcp_settings({**names, "pull_wait_s": 2, "max_deliveries": 2}))
    body = json.dumps({"v": 1, "job": uuid.uuid4().int})
    backend.enqueue("jobs", QueueMessage(body, {"type": "job"}))

    def receive() -> list[ReceivedMessage]:
        return list(backend.receive("jobs", 10, 1))

    assert [_until(receive, body).receive_count, _until(receive, body).receive_count] == [1, 2]
    deadline = time.monotonic() + deadline_s(60)
    dead: list[ReceivedMessage] = []
    while not dead and time.monotonic() < deadline:
        assert all(m.body != body for m in receive())
        dead = [m for m in backend.dead_letters("jobs") if m.body == body]
    [letter] = dead
    assert letter.receive_count == 3
    assert letter.attributes["type"] == "job"
    assert letter.attributes[DEAD_LETTER_COUNT] == "3"
    assert letter.attributes[DEAD_LETTER_SUBSCRIPTION] == names["jobs_subscription"]
    # peeking leaves the dead letter in place
    assert [m.body for m in backend.dead_letters("jobs") if m.body == body] == [body]


def test_a_delayed_message_carries_its_due_time(make_queue_backend: Callable[..., Backend]) -> None:
    backend = make_queue_backend()
    body = json.dumps({"v": 1, "later": uuid.uuid4().hex})
    before = time.time()
    backend.enqueue("lifecycle", QueueMessage(body), delay_s=2)

    def receive() -> list[ReceivedMessage]:
        return list(backend.receive("lifecycle", 10, 30))

    message = _until(receive, body)
    due = float(message.attributes[NOT_BEFORE])
    assert before + 2 - 0.001 <= due <= time.time()  # the attribute has millisecond precision
    assert backend.ack("lifecycle", message.receipt)


def test_waiting_for_its_due_time_does_not_use_up_a_messages_deliveries(
    make_queue_backend: Callable[..., Backend],
) -> None:
    """With one delivery allowed, a delayed message pulled early (and hidden until due) is still
    delivered once due, not dead-lettered: waiting is no failed delivery."""
    backend = make_queue_backend(max_deliveries=1)
    body = json.dumps({"v": 1, "waits": uuid.uuid4().hex})
    backend.enqueue("jobs", QueueMessage(body, {"type": "job"}), delay_s=2)
    assert not [m for m in backend.receive("jobs", 10, 30) if m.body == body]  # early: hidden until due

    message = _until(lambda: list(backend.receive("jobs", 10, 30)), body)

    assert backend.ack("jobs", message.receipt)
    assert not [m for m in backend.dead_letters("jobs") if m.body == body]


def test_an_unknown_receipt_is_not_acknowledged(make_queue_backend: Callable[..., Backend]) -> None:
    assert make_queue_backend().ack("jobs", "not-a-receipt") is False


def test_only_the_two_logical_queues_exist(make_queue_backend: Callable[..., Backend]) -> None:
    with pytest.raises(SettingsError, match="unknown queue 'builds'"):
        make_queue_backend().enqueue("builds", QueueMessage("{}"))


def test_hooks_stay_silent_for_another_provider() -> None:
    settings = gcp_settings()
    other = replace(settings, providers={**settings.providers, "queue": "embedded"})
    hook = gcp_backend(other).pm.hook
    assert hook.jitr_enqueue(queue="jobs", message=QueueMessage("{}"), delay_s=0, settings=other) is None
    assert hook.jitr_receive_messages(queue="jobs", max_messages=1, visibility_timeout_s=1, settings=other) is None
    assert hook.jitr_ack_message(queue="jobs", receipt="r", settings=other) is None
    assert hook.jitr_dead_letters(queue="jobs", settings=other) is None


def test_a_dead_letters_reason_fits_pub_subs_attribute_limit_in_bytes(
    make_queue_backend: Callable[..., Backend],
) -> None:
    """Pub/Sub takes an attribute value of at most 1,024 bytes (the emulator does not check): a long
    reason in a script of two-byte characters is cut on a character's edge to fit. A lone surrogate
    (as JSON's ``\\ud800`` decodes), which UTF-8 cannot carry, is replaced."""
    backend = make_queue_backend()
    body = json.dumps({"v": 1, "poison": uuid.uuid4().hex})
    reason = "échec \ud800: " + "é" * 1500
    assert backend.dead_letter("jobs", QueueMessage(body, {"type": "job"}), reason)
    [letter] = wait_until(
        lambda: [m for m in backend.dead_letters("jobs") if m.body == body] or None, 60, "the dead letter", step_s=0
    )
    kept = letter.attributes[DEAD_LETTER_REASON]
    assert len(kept.encode()) <= 1024
    assert len(kept.encode()) > 1020
    assert kept.startswith("échec ?: éé")
    assert reason.endswith(kept[len("échec ?: ") :])
