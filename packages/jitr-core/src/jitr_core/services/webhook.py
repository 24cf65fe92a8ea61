"""The webhook function: verify, parse, admit, route to a queue.

It answers within milliseconds: one HMAC, one JSON parse and, for a job jitr serves, one enqueue.
A job no pool serves (or of an owner or repository not allowed) is answered without touching the
store or a queue. Nothing is de-duplicated here: scaleup's claim on (job, attempt) makes a
duplicate ``queued`` harmless and lifecycle transitions only move forward.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend
from ..errors import JitrError, PayloadError, SignatureError
from ..logs import log_context, log_line, register_secret
from ..messages import JOBS_QUEUE, LIFECYCLE_QUEUE, JobMessage, LifecycleMessage, encode_job
from ..model import RUNNER_PREFIX, WorkflowJob
from ..routing import Router
from ..webhook import WebhookEvent, inspect, read_headers

log = logging.getLogger("jitr.webhook")
SECRET_REFRESH_S = 60.0
MAX_CACHED_ROUTES = 4096  # (repository, owner, labels, visibility) answers kept; more and the cache starts over


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """An answer: the HTTP status and the JSON body; ``text``, when set, is the body as ``json.dumps``
    writes it, made ahead (the routed answers), which a runtime may send instead of encoding ``body``."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    text: str = field(default="", compare=False, repr=False)


def _answer(status: int, body: Mapping[str, Any]) -> WebhookResponse:
    return WebhookResponse(status, body, json.dumps(body))


# A routed delivery's answer, the same for every delivery to a queue (read-only, as every answer's body).
_ROUTED = {queue: _answer(202, {"queued": queue}) for queue in (JOBS_QUEUE, LIFECYCLE_QUEUE)}
_MESSAGES = {JOBS_QUEUE: JobMessage, LIFECYCLE_QUEUE: LifecycleMessage}


class WebhookService:
    """Turns one HTTP delivery into at most one queue message."""

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.router = Router(backend.settings)
        self.clock = clock
        self._secret: str | None = None
        self._secret_at = 0.0
        self._lock = threading.Lock()
        # _not_ours's answers: the router's depend on the settings (fixed) and these parts of a job only
        self._routes: dict[tuple[str, str, str, tuple[str, ...], bool], str] = {}

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
        h = read_headers(headers)
        delivery_id = h.get("x-github-delivery")
        try:
            event = self._inspect(h, body)
        except PayloadError as exc:
            with log_context(delivery_id=delivery_id):
                log_line(log, logging.WARNING, "rejected delivery", status=exc.status, reason=str(exc))
            return WebhookResponse(exc.status, {"error": str(exc)})
        job, queue = event.job, event.queue
        if job is None or queue is None:
            with log_context(delivery_id=delivery_id):
                log_line(log, logging.INFO, "acknowledged", event=event.event, action=event.action)
            return WebhookResponse(200, {"ignored": f"{event.event} {event.action}".strip()})
        with log_context(delivery_id=delivery_id, job_id=job.job_id, action=job.action, repository=job.repository):
            reason = self._not_ours(job, queue)
            if reason:
                log_line(log, logging.INFO, "job ignored", reason=reason)
                return WebhookResponse(200, {"ignored": reason})
            try:  # the route (the delivery's one cloud call), written here: the path every routed delivery takes
                self.backend.enqueue(
                    queue, encode_job(_MESSAGES.get(queue, LifecycleMessage), job, event.delivery_id, received_at)
                )
            except JitrError as exc:
                log.error("could not route delivery", extra={"reason": str(exc)})
                return WebhookResponse(503, {"error": "temporarily unable to accept the delivery"})
            log_line(log, logging.INFO, "routed", queue=queue)
            return _ROUTED.get(queue) or WebhookResponse(202, {"queued": queue})

    def _not_ours(self, job: WorkflowJob, queue: str) -> str:
        """Why jitr leaves this job alone, or "" when it goes to ``queue``.

        A queued job must be admitted (allowed owner or repository, a pool serving its labels,
        public repositories only where allowed). A lifecycle event goes on whenever a pool serves
        the labels or one of jitr's runners took the job: an idle runner of a pool may take any job
        its labels match, whatever jitr admitted.
        """
        if queue != JOBS_QUEUE and (job.runner_name or "").startswith(RUNNER_PREFIX):
            return ""
        key = (queue, job.repository, job.owner, job.labels, job.private)
        reason = self._routes.get(key)
        if reason is None:
            reason = self._route_reason(job, queue)
            if len(self._routes) >= MAX_CACHED_ROUTES:
                self._routes.clear()
            self._routes[key] = reason
        return reason

    def _route_reason(self, job: WorkflowJob, queue: str) -> str:
        if queue == JOBS_QUEUE:
            return self.router.admit(job).reason
        if self.router.pool_for(job.labels) is None:
            return f"no pool serves labels {sorted(label.lower() for label in job.labels)}"
        return ""

    def _inspect(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        secret = self._secret or self._webhook_secret()  # read once set: no lock on the way of every delivery
        try:
            return inspect(headers, body, secret, self.settings.max_body_bytes)
        except SignatureError:
            fresh = self._webhook_secret(refresh=True)  # the secret may have been rotated
            if fresh == secret:
                raise
            return inspect(headers, body, fresh, self.settings.max_body_bytes)
