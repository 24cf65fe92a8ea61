"""Pub/Sub deliveries as they reach a Cloud Run function, turned into one queue message.

Three shapes carry the same ``MessagePublishedData``: an Eventarc CloudEvent in binary mode
(``ce-*`` headers, the data as the body), a CloudEvent in structured mode (``specversion`` in
the body) and a plain push subscription's envelope (``{"message": ..., "subscription": ...}``).
Anything else raises :class:`MalformedEvent` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_CLOUD_TRACE = re.compile(r"^([0-9a-f]{32})(?:/|$)")


class MalformedEvent(ValueError):
    """The request is not a Pub/Sub message delivery; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Pub/Sub message: its text body, attributes and the identifiers worth logging."""

    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    event_id: str = ""
    message_id: str = ""
    subscription: str = ""
    delivery_attempt: int | None = None


def parse(headers: Mapping[str, str], raw: bytes) -> Delivery:
    """The message a request delivers, from any of the three shapes (``headers`` by lower-case name)."""
    document = _json(raw)
    if "ce-specversion" in headers:
        _check_type(headers.get("ce-type", ""))
        return _published(document, headers.get("ce-id", ""))
    if "specversion" in document:
        _check_type(str(document.get("type", "")))
        data = document.get("data")
        if isinstance(data, str) and "data_base64" not in document:
            data = _json(data.encode())
        if not isinstance(data, dict):
            raise MalformedEvent("a structured CloudEvent must carry MessagePublishedData as a JSON object in 'data'")
        return _published(data, str(document.get("id", "")))
    if "message" in document:
        return _published(document, "")
    raise MalformedEvent(
        "expected a CloudEvent or a Pub/Sub push envelope, found neither 'ce-specversion', 'specversion' nor 'message'"
    )


def trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id from ``traceparent``/``ce-traceparent`` or ``X-Cloud-Trace-Context``, if any
    (``headers`` by lower-case name)."""
    for name, pattern in (
        ("traceparent", _TRACEPARENT),
        ("ce-traceparent", _TRACEPARENT),
        ("x-cloud-trace-context", _CLOUD_TRACE),
    ):
        if match := pattern.match(headers.get(name, "").strip()):
            return match.group(1)
    return None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedEvent("the request body nests JSON too deeply") from None
    if not isinstance(document, dict):
        raise MalformedEvent(f"the request body must be a JSON object, found {type(document).__name__}")
    return document


def _check_type(event_type: str) -> None:
    if event_type != PUBLISHED:
        raise MalformedEvent(f"CloudEvent type must be {PUBLISHED}, found {event_type[:120]!r}")


def _published(data: Mapping[str, Any], event_id: str) -> Delivery:
    message = data.get("message")
    if not isinstance(message, dict):
        raise MalformedEvent("MessagePublishedData lacks a 'message' object")
    encoded = message.get("data", "")
    if not isinstance(encoded, str):
        raise MalformedEvent(f"message.data must be a base64 string, found {type(encoded).__name__}")
    try:
        body = base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        raise MalformedEvent(f"message.data is not base64: {exc}") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise MalformedEvent("message.attributes must map names to strings")
    attempt = data.get("deliveryAttempt")
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    return Delivery(
        body=body,
        attributes={str(k): v for k, v in attributes.items()},
        event_id=event_id or message_id,
        message_id=message_id,
        subscription=str(data.get("subscription", "")),
        delivery_attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )
