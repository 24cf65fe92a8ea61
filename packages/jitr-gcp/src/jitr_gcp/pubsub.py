"""The ``jobs`` and ``lifecycle`` queues on Pub/Sub: publish, pull, acknowledge, dead letters.

Each logical queue is a topic with one pull subscription (for pull runtimes and tests; Cloud Run
uses a push subscription instead) and a dead-letter topic with a subscription to peek at it.

- ``receive_count`` is Pub/Sub's ``delivery_attempt``, which it fills in only on subscriptions
  with a dead-letter policy; without one, deliveries are counted in this process.
- A message delivered more than ``max_deliveries`` times is moved here, in the pull path, to the
  dead-letter topic (published there, then acknowledged). Pub/Sub's own dead-letter policy
  (5 to 100 attempts) does the same on the server; whichever limit is lower wins.
- Pub/Sub cannot delay a message, so a delayed one carries a ``not_before`` attribute (epoch
  seconds); pulled early, its ack deadline is set to the time left (at most 600 s, Pub/Sub's
  limit) and it is not returned. Each early pull counts as a delivery attempt in Pub/Sub's
  ``delivery_attempt`` (and its dead-letter policy), not against ``max_deliveries`` here
  (counted per process).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jitr_core.errors import BackendError
from jitr_core.model import QueueMessage, ReceivedMessage

from .clients import bounded, cached_client
from .config import GcpConfig, QueueNames

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

log = logging.getLogger("jitr.gcp.pubsub")

NOT_BEFORE = "not_before"
# The attributes Pub/Sub adds when it dead-letters a message; the pull path adds the same.
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
DEAD_LETTER_REASON = "dead_letter_reason"
DEAD_LETTER_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
MAX_ACK_DEADLINE_S = 600
MAX_ATTRIBUTE_BYTES = 1024
# Pub/Sub's bounds for a dead-letter policy's max_delivery_attempts.
POLICY_ATTEMPTS = (5, 100)
_PEEK_LIMIT = 100


def _emulator() -> str:
    return os.environ.get("PUBSUB_EMULATOR_HOST", "")


def _publisher() -> PublisherClient:
    def build() -> PublisherClient:
        from google.cloud.pubsub_v1 import PublisherClient, types

        # One message per request: a webhook publishes one event and must not wait for a batch.
        return PublisherClient(batch_settings=types.BatchSettings(max_messages=1))

    return cached_client(("pubsub.publisher", _emulator()), build)


def _subscriber() -> SubscriberClient:
    def build() -> SubscriberClient:
        from google.cloud.pubsub_v1 import SubscriberClient

        return SubscriberClient()

    return cached_client(("pubsub.subscriber", _emulator()), build)


class _DeliveryCounter:
    """Counts deliveries per message in this process, for subscriptions without a dead-letter policy."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def next(self, subscription: str, message_id: str) -> int:
        key = (subscription, message_id)
        with self._lock:
            count = self._counts.pop(key, 0) + 1
            self._counts[key] = count
            while len(self._counts) > self._capacity:
                self._counts.popitem(last=False)
        return count

    def count(self, subscription: str, message_id: str) -> int:
        with self._lock:
            return self._counts.get((subscription, message_id), 0)


_counter = _DeliveryCounter()
_early = _DeliveryCounter()  # pulls of a message before it was due: waiting is no failed delivery


def enqueue(queue: str, message: QueueMessage, delay_s: int, cfg: GcpConfig) -> str:
    """Publish one message; returns Pub/Sub's message id."""
    attributes = dict(message.attributes)
    if delay_s > 0:
        attributes[NOT_BEFORE] = f"{time.time() + delay_s:.3f}"
    names = cfg.queue(queue)
    try:
        future = _publisher().publish(names.topic, message.body.encode(), **attributes)
        message_id: str = future.result(timeout=cfg.operation_timeout_s)
    except Exception as exc:  # the future re-raises whatever the publish failed with
        raise BackendError(f"publishing to Pub/Sub topic {names.topic} failed: {_text(exc)}") from None
    return message_id


def dead_letter(queue: str, message: QueueMessage, reason: str, cfg: GcpConfig) -> bool:
    """Publish a poison message straight to the queue's dead-letter topic, with the reason attached."""
    names = cfg.queue(queue)
    attributes = {**message.attributes, DEAD_LETTER_REASON: _attribute(reason)}
    try:
        _publisher().publish(names.dead_letter_topic, message.body.encode(), **attributes).result(
            timeout=cfg.operation_timeout_s
        )
    except Exception as exc:  # the future re-raises whatever the publish failed with
        raise BackendError(f"publishing to dead-letter topic {names.dead_letter_topic} failed: {_text(exc)}") from None
    return True


def _attribute(value: str) -> str:
    """``value`` cut to Pub/Sub's limit for an attribute value, in UTF-8 bytes, on a character's edge
    (a lone surrogate, which UTF-8 cannot carry, becomes ``?``)."""
    return value.encode(errors="replace")[:MAX_ATTRIBUTE_BYTES].decode(errors="ignore")


def receive(queue: str, max_messages: int, visibility_timeout_s: int, cfg: GcpConfig) -> list[ReceivedMessage]:
    """Pull up to ``max_messages`` due messages and hide them for ``visibility_timeout_s`` (at most 600 s)."""
    names = cfg.queue(queue)
    pulled = _pull(names.subscription, max_messages, cfg)
    now = time.time()
    ready: list[ReceivedMessage] = []
    deferred: dict[int, list[str]] = {}
    dead: list[tuple[Any, int]] = []
    for received in pulled:
        message = received.message
        attributes = dict(message.attributes)
        attempt = received.delivery_attempt or _counter.next(names.subscription, message.message_id)
        not_before = _float(attributes.get(NOT_BEFORE))
        if not_before > now:
            _early.next(names.subscription, message.message_id)
            seconds = min(MAX_ACK_DEADLINE_S, math.ceil(not_before - now))
            deferred.setdefault(seconds, []).append(received.ack_id)
        elif attempt - _early.count(names.subscription, message.message_id) > cfg.max_deliveries:
            dead.append((received, attempt))
        else:
            body = message.data.decode("utf-8", errors="replace")
            ready.append(ReceivedMessage(body, received.ack_id, attempt, attributes))
    if ready:
        hidden = min(MAX_ACK_DEADLINE_S, max(0, visibility_timeout_s))
        _modify(names.subscription, [m.receipt for m in ready], hidden, cfg)
    for seconds, ack_ids in deferred.items():
        _modify(names.subscription, ack_ids, seconds, cfg)
    for received, attempt in dead:
        _dead_letter(names, received, attempt, cfg)
    return ready


def ack(queue: str, receipt: str, cfg: GcpConfig) -> bool:
    """Acknowledge a received message; False when Pub/Sub does not know the receipt."""
    from google.api_core import exceptions

    subscription = cfg.queue(queue).subscription
    try:
        _subscriber().acknowledge(
            request={"subscription": subscription, "ack_ids": [receipt]}, **bounded(cfg.operation_timeout_s)
        )
    except exceptions.InvalidArgument:
        return False
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"acknowledging on {subscription} failed: {exc.message}") from None
    return True


def dead_letters(queue: str, cfg: GcpConfig) -> list[ReceivedMessage]:
    """Peek at up to 100 dead letters: pulled from the dead-letter subscription, then released at once."""
    subscription = cfg.queue(queue).dead_letter_subscription
    pulled = _pull(subscription, _PEEK_LIMIT, cfg)
    if pulled:
        _modify(subscription, [r.ack_id for r in pulled], 0, cfg)
    return [
        ReceivedMessage(
            r.message.data.decode("utf-8", errors="replace"),
            r.ack_id,
            int(_float(r.message.attributes.get(DEAD_LETTER_COUNT))) or r.delivery_attempt,
            dict(r.message.attributes),
        )
        for r in pulled
    ]


def ensure_topology(cfg: GcpConfig, queues: Iterable[str] = ("jobs", "lifecycle")) -> None:
    """Create the topics and subscriptions the settings name, if missing (development and tests).

    Production deployments create them with the infrastructure code; see docs/gcp-configuration.md.
    """
    from google.api_core import exceptions

    publisher, subscriber = _publisher(), _subscriber()
    attempts = min(max(cfg.max_deliveries, POLICY_ATTEMPTS[0]), POLICY_ATTEMPTS[1])
    for queue in queues:
        names = cfg.queue(queue)
        for topic in (names.topic, names.dead_letter_topic):
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(name=topic)
        subscriptions: list[dict[str, Any]] = [
            {
                "name": names.subscription,
                "topic": names.topic,
                "ack_deadline_seconds": 60,
                "dead_letter_policy": {"dead_letter_topic": names.dead_letter_topic, "max_delivery_attempts": attempts},
            },
            {"name": names.dead_letter_subscription, "topic": names.dead_letter_topic, "ack_deadline_seconds": 10},
        ]
        for request in subscriptions:
            with contextlib.suppress(exceptions.AlreadyExists):
                subscriber.create_subscription(request=request)


def _pull(subscription: str, max_messages: int, cfg: GcpConfig) -> list[Any]:
    from google.api_core import exceptions

    try:
        response = _subscriber().pull(
            request={"subscription": subscription, "max_messages": max(1, min(1000, max_messages))},
            timeout=cfg.pull_wait_s,
            retry=None,
        )
    except exceptions.DeadlineExceeded:
        return []
    except exceptions.GoogleAPICallError as exc:
        raise BackendError(f"pulling from Pub/Sub subscription {subscription} failed: {exc.message}") from None
    return list(response.received_messages)


def _modify(subscription: str, ack_ids: list[str], seconds: int, cfg: GcpConfig) -> None:
    from google.api_core import exceptions

    try:
        _subscriber().modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": seconds},
            **bounded(cfg.operation_timeout_s),
        )
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"changing ack deadlines on {subscription} failed: {exc.message}") from None


def _dead_letter(names: QueueNames, received: Any, attempt: int, cfg: GcpConfig) -> None:
    """Move one message to the dead-letter topic: publish first, so a crash leaves a duplicate, not a loss."""
    message = received.message
    attributes = {
        **message.attributes,
        DEAD_LETTER_COUNT: str(attempt),
        DEAD_LETTER_SUBSCRIPTION: names.subscription.rsplit("/", 1)[-1],
    }
    try:
        _publisher().publish(names.dead_letter_topic, message.data, **attributes).result(
            timeout=cfg.operation_timeout_s
        )
    except Exception as exc:  # leave it on the subscription; the next pull tries again
        log.warning("gcp dead-letter publish failed", extra={"topic": names.dead_letter_topic, "error": _text(exc)})
        return
    try:
        _subscriber().acknowledge(request={"subscription": names.subscription, "ack_ids": [received.ack_id]})
    except Exception as exc:  # redelivered and moved again later: a duplicate dead letter, never a loss
        log.warning("gcp dead-letter ack failed", extra={"subscription": names.subscription, "error": _text(exc)})
        return
    log.info("gcp message dead-lettered", extra={"subscription": names.subscription, "attempts": attempt})


def _float(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


def _text(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)
