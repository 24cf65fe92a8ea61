"""SQS specifics beyond the queue contract: delays, attributes, dead letters, both logical queues."""

from __future__ import annotations

import json
import uuid

import pytest
from awsworld import World
from jitr_core.backend import Backend
from jitr_core.errors import BackendError
from jitr_core.model import QueueMessage, ReceivedMessage
from jitr_core.plugins import JitrPluginManager
from jitr_core.testing.environment import wait_until


def _body() -> str:
    return json.dumps({"v": 1, "id": uuid.uuid4().hex})


def _take(backend: Backend, queue: str, body: str) -> ReceivedMessage:
    def arrived() -> ReceivedMessage | None:
        return next((m for m in backend.receive(queue, 10, 30) if m.body == body), None)

    return wait_until(arrived, 60, f"{body} to arrive on {queue}", step_s=0.1)


@pytest.mark.parametrize("queue", ["jobs", "lifecycle"])
def test_both_queues_carry_messages_and_attributes(backend: Backend, queue: str) -> None:
    body = _body()
    message_id = backend.enqueue(queue, QueueMessage(body, {"type": queue, "job_id": "7", "empty": ""}))
    assert message_id
    message = _take(backend, queue, body)
    assert message.attributes == {"type": queue, "job_id": "7"}  # SQS takes no empty values
    assert message.receive_count == 1
    assert backend.ack(queue, message.receipt)


def test_a_delay_beyond_fifteen_minutes_is_shortened_not_refused(backend: Backend, world: World) -> None:
    body = _body()
    backend.enqueue("lifecycle", QueueMessage(body), delay_s=3600)
    assert all(m.body != body for m in backend.receive("lifecycle", 10, 30))
    attributes = world.client("sqs").get_queue_attributes(
        QueueUrl=world.lifecycle_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) >= 1


def test_a_negative_delay_means_now(backend: Backend) -> None:
    body = _body()
    backend.enqueue("lifecycle", QueueMessage(body), delay_s=-5)
    assert backend.ack("lifecycle", _take(backend, "lifecycle", body).receipt)


def test_a_poison_message_goes_straight_to_the_dead_letter_queue(backend: Backend) -> None:
    body = _body()
    assert backend.dead_letter("lifecycle", QueueMessage(body, {"type": "lifecycle"}), "payload is not JSON")
    [dead] = [m for m in backend.dead_letters("lifecycle") if m.body == body]
    assert dead.attributes == {"type": "lifecycle", "dead_letter_reason": "payload is not JSON"}
    assert all(m.body != body for m in backend.receive("lifecycle", 10, 1))


def test_a_dead_letters_reason_holds_only_what_sqs_takes(backend: Backend) -> None:
    """SQS refuses an attribute holding a character XML does not allow (moto does not check), and a
    lone surrogate (as JSON's ``\\ud800`` decodes) cannot be sent at all: a reason quoting such text
    (a GitHub error message) still dead-letters the message, those characters replaced."""
    body = _body()
    reason = "GitHub said: \x00bad\x1b[0m \ud800 end\ufffe" + "x" * 2000
    assert backend.dead_letter("jobs", QueueMessage(body, {"type": "job"}), reason)
    [dead] = [m for m in backend.dead_letters("jobs") if m.body == body]
    kept = dead.attributes["dead_letter_reason"]
    assert kept.startswith("GitHub said: \ufffdbad\ufffd[0m \ufffd end\ufffdxxx")
    assert len(kept) == 1000


def test_the_dead_letter_queue_is_found_from_the_redrive_policy(
    world: World, plugin_manager: JitrPluginManager
) -> None:
    backend = Backend(plugin_manager, world.settings(jobs_dlq_url=None, lifecycle_dlq_url=None))
    body = _body()
    assert backend.dead_letter("jobs", QueueMessage(body), "unknown message type")
    assert any(m.body == body for m in backend.dead_letters("jobs"))


def test_a_queue_without_a_dead_letter_queue(world: World, plugin_manager: JitrPluginManager) -> None:
    bare = world.client("sqs").create_queue(QueueName=f"bare-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    backend = Backend(plugin_manager, world.settings(lifecycle_queue_url=bare, lifecycle_dlq_url=None))
    assert backend.dead_letters("lifecycle") == []
    assert backend.dead_letter("lifecycle", QueueMessage(_body()), "unknown message type") is False


def test_an_unknown_receipt_is_not_acknowledged(backend: Backend) -> None:
    assert backend.ack("jobs", "not-a-receipt") is False


def test_only_the_two_logical_queues_exist(backend: Backend) -> None:
    with pytest.raises(ValueError, match="unknown queue 'scaleup'"):
        backend.enqueue("scaleup", QueueMessage(_body()))


def test_an_unreachable_endpoint_is_a_backend_error(world: World, plugin_manager: JitrPluginManager) -> None:
    backend = Backend(plugin_manager, world.settings(endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(BackendError, match="SQS SendMessage for queue 'jobs' failed: EndpointConnectionError"):
        backend.enqueue("jobs", QueueMessage(_body()))
