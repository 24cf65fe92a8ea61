"""Webhook verification, parsing and routing: pure functions, no I/O.

The signature is checked over the raw bytes, in constant time, before any JSON is parsed, so an
unsigned body costs one HMAC and nothing else. Every failure is a :class:`PayloadError` carrying
the HTTP status to answer; nothing else escapes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PayloadError, SignatureError
from .messages import JOBS_QUEUE, LIFECYCLE_QUEUE
from .model import MAX_ID, WorkflowJob

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
CONTENT_TYPE_HEADER = "content-type"
READ_HEADERS = (SIGNATURE_HEADER, EVENT_HEADER, DELIVERY_HEADER, CONTENT_TYPE_HEADER)  # all inspect() reads
_ACTIONS = ("queued", "waiting", "in_progress", "completed")
_ROUTES = {"queued": JOBS_QUEUE, "in_progress": LIFECYCLE_QUEUE, "completed": LIFECYCLE_QUEUE}


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified delivery: what it is, and where (if anywhere) it goes."""

    event: str
    delivery_id: str
    job: WorkflowJob | None = None
    queue: str | None = None  # None: acknowledged and ignored

    @property
    def action(self) -> str:
        return self.job.action if self.job else ""


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names as HTTP treats them: case-insensitive."""
    return {str(k).lower(): str(v) for k, v in headers.items()}


def read_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers :func:`inspect` reads (READ_HEADERS), by lower-case name, as :func:`lower_headers`
    would give them. A delivery carries a dozen more, and a proxy adds its own: when the names come
    in lower case (HTTP/2, API Gateway's version 2.0 events, function URLs), four look-ups copy what
    is read; otherwise, or when one of the four is missing, every name is lowered."""
    try:
        return {name: str(headers[name]) for name in READ_HEADERS}
    except KeyError:
        lowered = lower_headers(headers)
    return {name: lowered[name] for name in READ_HEADERS if name in lowered}


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> None:
    """Check ``X-Hub-Signature-256`` over the raw body; raise :class:`SignatureError` otherwise."""
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise SignatureError("webhook secret is empty; refusing to accept unsigned deliveries")
    if not header:
        raise SignatureError("missing X-Hub-Signature-256 header")
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or len(digest) != 64 or not digest.isascii():
        raise SignatureError("X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits")
    expected = hmac.digest(key, body, "sha256").hex()  # one-shot: no HMAC object, a fifth off the check
    if not hmac.compare_digest(expected, digest.lower()):  # both ASCII (checked above)
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def inspect(headers: Mapping[str, str], body: bytes, secret: str | bytes, max_body_bytes: int) -> WebhookEvent:
    """Verify, parse and route one delivery (headers must already be lower-cased)."""
    if len(body) > max_body_bytes:
        raise PayloadError(f"body is {len(body)} bytes; at most {max_body_bytes} are accepted", status=413)
    verify_signature(secret, body, headers.get(SIGNATURE_HEADER))
    event = headers.get(EVENT_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER, "")
    if not event:
        raise PayloadError("missing X-GitHub-Event header")
    if not delivery or len(delivery) > 128:
        raise PayloadError("missing or oversized X-GitHub-Delivery header")
    content_type = headers.get(CONTENT_TYPE_HEADER, "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise PayloadError(
            f"content type must be application/json, found {content_type!r}; set the App's webhook to JSON",
            status=415,
        )
    if event != "workflow_job":
        if event == "ping":
            _object(body)
        return WebhookEvent(event, delivery)
    job = parse_workflow_job(_object(body))
    return WebhookEvent(event, delivery, job, _ROUTES.get(job.action))


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("body nests JSON too deeply") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body must be a JSON object, found {type(data).__name__}")
    return data


def parse_workflow_job(payload: Mapping[str, Any]) -> WorkflowJob:
    """The fields jitr needs from a ``workflow_job`` payload, type-checked."""
    action = _get(payload, "action", str)
    if action not in _ACTIONS:
        raise PayloadError(f"workflow_job action must be one of {_ACTIONS}, found {action[:40]!r}")
    wj = _get(payload, "workflow_job", dict)
    repo = _get(payload, "repository", dict)
    owner = _get(repo, "owner", dict, "repository.owner")
    installation = payload.get("installation")
    installation_id = None
    if installation is not None:
        installation_id = _get(_as_dict(installation, "installation"), "id", int, "installation.id")
    labels = _get(wj, "labels", list, "workflow_job.labels")
    if len(labels) > 64 or not all(isinstance(label, str) and 0 < len(label) <= 256 for label in labels):
        raise PayloadError("workflow_job.labels must be at most 64 non-empty strings")
    full_name = _get(repo, "full_name", str, "repository.full_name")
    if full_name.count("/") != 1 or len(full_name) > 140:
        raise PayloadError(f"repository.full_name must be 'owner/name', found {full_name[:80]!r}")
    return WorkflowJob(
        action=action,
        job_id=_get(wj, "id", int, "workflow_job.id"),
        run_id=_get(wj, "run_id", int, "workflow_job.run_id"),
        run_attempt=_opt(wj, "run_attempt", int, "workflow_job.run_attempt") or 1,
        name=(_opt(wj, "name", str, "workflow_job.name") or "")[:256],
        status=_get(wj, "status", str, "workflow_job.status")[:32],
        labels=tuple(labels),
        repository=full_name,
        owner=_name(_get(owner, "login", str, "repository.owner.login"), "repository.owner.login", 100),
        private=bool(_opt(repo, "private", bool, "repository.private")),
        installation_id=installation_id,
        conclusion=_opt_name(wj, "conclusion", "workflow_job.conclusion", 32),
        runner_id=_opt(wj, "runner_id", int, "workflow_job.runner_id"),
        runner_name=_opt_name(wj, "runner_name", "workflow_job.runner_name", 256),
        created_at=_opt_name(wj, "created_at", "workflow_job.created_at", 64),
    )


def _as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object, found {type(value).__name__}")
    return value


def _get(data: Mapping[str, Any], key: str, kind: type, where: str | None = None) -> Any:
    value = data.get(key)
    if value is None:
        raise PayloadError(f"{where or key} is required")
    return _typed(value, kind, where or key)


def _opt(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    return None if value is None else _typed(value, kind, where)


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # run_id is typed "number" in GitHub's schema
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"{where} must be {kind.__name__}, found {type(value).__name__}")
    if isinstance(value, int) and not 0 <= value <= MAX_ID:
        raise PayloadError(f"{where} must be int in 0..{MAX_ID} (GitHub's 64-bit ids), found one outside")
    return value


def _opt_name(data: Mapping[str, Any], key: str, where: str, limit: int) -> str | None:
    value = _opt(data, key, str, where)
    return value if not value else _name(value, where, limit)


def _name(value: str, where: str, limit: int) -> str:
    if not value or len(value) > limit:
        raise PayloadError(f"{where} must be 1 to {limit} characters, found {len(value)}")
    return value
