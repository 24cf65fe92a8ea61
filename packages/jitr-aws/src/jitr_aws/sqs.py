"""The ``jobs`` and ``lifecycle`` queues on SQS, with dead-lettering by the queues' redrive policy.

SQS moves a message to the dead-letter queue itself once it has been received ``maxReceiveCount``
times; jitr only configures the policy (infrastructure does) and peeks at the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from jitr_core.model import QueueMessage, ReceivedMessage

from .clients import client
from .config import AwsConfig
from .faults import backend_error, error_code

logger = logging.getLogger("jitr.aws.sqs")

MAX_DELAY_S = 900  # SQS's limit for DelaySeconds
MAX_BATCH = 10  # SQS's limit for MaxNumberOfMessages
MAX_VISIBILITY_S = 12 * 3600  # SQS's limit for VisibilityTimeout
REASON_ATTRIBUTE = "dead_letter_reason"
_REASON_LIMIT = 1000
# What SQS takes in a body or string attribute (XML's characters); anything else is refused.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_dead_letter_urls: dict[str, str | None] = {}


def enqueue(queue: str, message: QueueMessage, delay_s: int, config: AwsConfig) -> str:
    """Send ``message``; a delay beyond SQS's 15 minutes is shortened to 15 minutes.

    Attributes travel as SQS string attributes; SQS refuses empty values, so those are left out
    (a receiver reads a missing attribute and an empty one alike).
    """
    return _send(config.queue_url(queue), queue, message.body, message.attributes, delay_s, config)


def receive(queue: str, max_messages: int, visibility_timeout_s: int, config: AwsConfig) -> list[ReceivedMessage]:
    """Take what is visible now (no long polling), hiding each message for the visibility timeout."""
    return _receive(
        config.queue_url(queue),
        queue,
        min(max(max_messages, 1), MAX_BATCH),
        min(max(visibility_timeout_s, 0), MAX_VISIBILITY_S),
        config,
    )


def ack(queue: str, receipt: str, config: AwsConfig) -> bool:
    """Delete a received message; False when SQS does not know the receipt."""
    try:
        client("sqs", config).delete_message(QueueUrl=config.queue_url(queue), ReceiptHandle=receipt)
    except ClientError as exc:
        if error_code(exc) == "ReceiptHandleIsInvalid":
            return False
        raise backend_error("SQS", "DeleteMessage", exc, f"queue {queue!r}") from exc
    except BotoCoreError as exc:
        raise backend_error("SQS", "DeleteMessage", exc, f"queue {queue!r}") from exc
    return True


def dead_letter(queue: str, message: QueueMessage, reason: str, config: AwsConfig) -> bool:
    """Send a poison message straight to ``queue``'s dead-letter queue; False when it has none."""
    url = config.dlq_url(queue) or _discover_dead_letter_url(queue, config)
    if url is None:
        logger.warning("queue %s has no dead-letter queue; poison message dropped", queue, extra={"queue": queue})
        return False
    attributes = {**message.attributes, REASON_ATTRIBUTE: _NOT_XML.sub("\ufffd", reason[:_REASON_LIMIT])}
    _send(url, f"{queue} dead-letter", message.body, attributes, 0, config)
    return True


def dead_letters(queue: str, config: AwsConfig) -> list[ReceivedMessage]:
    """Peek at up to 10 dead letters of ``queue`` without hiding them (visibility timeout 0)."""
    url = config.dlq_url(queue) or _discover_dead_letter_url(queue, config)
    return _receive(url, f"{queue} dead-letter", MAX_BATCH, 0, config) if url else []


def _send(url: str, label: str, body: str, attributes: Mapping[str, str], delay_s: int, config: AwsConfig) -> str:
    try:
        answer = client("sqs", config).send_message(
            QueueUrl=url,
            MessageBody=body,
            DelaySeconds=min(max(delay_s, 0), MAX_DELAY_S),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value
            },
        )
    except (ClientError, BotoCoreError) as exc:
        raise backend_error("SQS", "SendMessage", exc, f"queue {label!r}") from exc
    return str(answer["MessageId"])


def _receive(url: str, label: str, max_messages: int, visibility_s: int, config: AwsConfig) -> list[ReceivedMessage]:
    try:
        answer = client("sqs", config).receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
    except (ClientError, BotoCoreError) as exc:
        raise backend_error("SQS", "ReceiveMessage", exc, f"queue {label!r}") from exc
    return [_received(message) for message in answer.get("Messages", [])]


def _received(message: Mapping[str, Any]) -> ReceivedMessage:
    return ReceivedMessage(
        body=message["Body"],
        receipt=message["ReceiptHandle"],
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        attributes={
            name: value["StringValue"]
            for name, value in message.get("MessageAttributes", {}).items()
            if "StringValue" in value
        },
    )


def _discover_dead_letter_url(queue: str, config: AwsConfig) -> str | None:
    """The dead-letter queue named by ``queue``'s redrive policy (None without one); cached."""
    url = config.queue_url(queue)
    if url in _dead_letter_urls:
        return _dead_letter_urls[url]
    sqs = client("sqs", config)
    about = f"queue {queue!r}'s dead-letter queue"
    try:
        answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    except (ClientError, BotoCoreError) as exc:
        raise backend_error("SQS", "GetQueueAttributes", exc, about) from exc
    policy = answer.get("Attributes", {}).get("RedrivePolicy")
    found = None
    if policy:
        _, _, _, _, account, name = json.loads(policy)["deadLetterTargetArn"].split(":", 5)
        try:
            found = str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
        except (ClientError, BotoCoreError) as exc:
            raise backend_error("SQS", "GetQueueUrl", exc, about) from exc
    _dead_letter_urls[url] = found
    return found
