"""The webhook function: verify, parse, de-duplicate by delivery id, route to a queue.

It answers within milliseconds: one HMAC, one JSON parse, one conditional write, one enqueue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend
from ..errors import JitrError, PayloadError, SignatureError
from ..logs import log_context, register_secret
from ..messages import JobMessage, LifecycleMessage, encode
from ..webhook import inspect, lower_headers
from .records import DELIVERY, Store

log = logging.getLogger("jitr.webhook")
SECRET_REFRESH_S = 60.0


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int
    body: Mapping[str, Any] = field(default_factory=dict)


class WebhookService:
    """Turns one HTTP delivery into at most one queue message."""

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.store = Store(backend, clock)
        self.clock = clock
        self._secret: str | None = None
        self._secret_at = 0.0
        self._lock = threading.Lock()

    def _webhook_secret(self, refresh: bool = False) -> str:
        with self._lock:
            stale = refresh and self.clock() - self._secret_at > SECRET_REFRESH_S
            if self._secret is None or stale:
                self._secret = self.backend.secret("webhook_secret")
                self._secret_at = self.clock()
                register_secret(self._secret)
            return self._secret

    def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        """Answer a delivery; never raises for bad input (4xx) and says 5xx only when a retry may help."""
        received_at = self.clock()
        h = lower_headers(headers)
        with log_context(delivery_id=h.get("x-github-delivery")):
            try:
                event = self._inspect(h, body)
            except PayloadError as exc:
                log.warning("rejected delivery", extra={"status": exc.status, "reason": str(exc)})
                return WebhookResponse(exc.status, {"error": str(exc)})
            if event.job is None or event.queue is None:
                log.info("acknowledged", extra={"event": event.event, "action": event.action})
                return WebhookResponse(200, {"ignored": f"{event.event} {event.action}".strip()})
            job = event.job
            with log_context(job_id=job.job_id, action=job.action, repository=job.repository):
                try:
                    return self._route(event.delivery_id, job, event.queue, received_at)
                except JitrError as exc:
                    log.error("could not route delivery", extra={"reason": str(exc)})
                    return WebhookResponse(503, {"error": "temporarily unable to accept the delivery"})

    def _inspect(self, headers: Mapping[str, str], body: bytes):  # type: ignore[no-untyped-def]
        secret = self._webhook_secret()
        try:
            return inspect(headers, body, secret, self.settings.max_body_bytes)
        except SignatureError:
            fresh = self._webhook_secret(refresh=True)  # the secret may have been rotated
            if fresh == secret:
                raise
            return inspect(headers, body, fresh, self.settings.max_body_bytes)

    def _route(self, delivery_id: str, job: Any, queue: str, received_at: float) -> WebhookResponse:
        expires = received_at + self.settings.delivery_ttl_s
        if self.store.create(DELIVERY, delivery_id, "seen", expires_at=expires) is None:
            log.info("duplicate delivery ignored")
            return WebhookResponse(200, {"duplicate": True})
        message = (
            JobMessage.from_job(job, delivery_id, received_at)
            if queue == "jobs"
            else LifecycleMessage.from_job(job, delivery_id, received_at)
        )
        try:
            self.backend.enqueue(queue, encode(message))
        except Exception:
            self.backend.delete(DELIVERY, delivery_id)  # let GitHub's redelivery through
            raise
        log.info("routed", extra={"queue": queue})
        return WebhookResponse(202, {"queued": queue})
