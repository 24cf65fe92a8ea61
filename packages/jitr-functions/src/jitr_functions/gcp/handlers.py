"""The Cloud Run function targets: each turns one request into one core call.

``webhook`` answers GitHub; ``scaleup`` and ``lifecycle`` take Pub/Sub deliveries (Eventarc
CloudEvents or push envelopes) and answer 2xx to acknowledge or 503 to have Pub/Sub redeliver;
``scaledown`` and ``rebalancer`` run once per Cloud Scheduler call, whether it comes over HTTP
or through a Pub/Sub topic; ``broker`` answers a VM its JIT config, once. The app is built on
an instance's first request (its cold start).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import flask
import functions_framework
from jitr_core.errors import JitrError, PassIncomplete
from jitr_core.logs import log_context
from jitr_core.messages import JOBS_QUEUE, LIFECYCLE_QUEUE
from jitr_core.model import QueueMessage
from jitr_core.services.consume import FUNCTIONS, Disposition, consume
from jitr_gcp.config import gcp_config
from jitr_gcp.pubsub import NOT_BEFORE
from werkzeug.exceptions import RequestEntityTooLarge

from .. import coldstart
from ..app import App, get_app
from . import events, preimport

log = logging.getLogger("jitr.gcp.functions")
# A message re-sent with a delay arrives at once (Pub/Sub cannot delay); waits up to this long
# are served by holding the request, longer ones by a 503 and Pub/Sub's retry backoff.
HOLD_LIMIT_S = 20.0
TRACE_FIELD = "logging.googleapis.com/trace"
View = Callable[[flask.Request], flask.Response]


def _settles(view: View) -> View:
    """``view``, ending the cold start's collector pause as the worker's first request ends, however it ends."""

    @functools.wraps(view)
    def settled(request: flask.Request) -> flask.Response:
        try:
            return view(request)
        finally:
            coldstart.settle()

    return settled


@functions_framework.http
@_settles
def webhook(request: flask.Request) -> flask.Response:
    """GitHub's ``workflow_job`` deliveries: verify, admit, enqueue; 2xx, 4xx or 503."""
    app = get_app()
    headers = _headers(request)
    with _request_context(app, headers):
        if request.method != "POST":
            return _not_post(request)
        request.max_content_length = app.settings.max_body_bytes
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            # functions-framework reads the body again after the view: let it drain, not raise
            request.max_content_length = None
            return _answer(413, {"error": f"body exceeds {app.settings.max_body_bytes} bytes"})
        response = app.webhook.handle(headers, body)
        return _answer(response.status, response.body, text=response.text)


@functions_framework.http
@_settles
def broker(request: flask.Request) -> flask.Response:
    """A VM's request for its JIT config, proven with its identity token: 200 once, 4xx refusals, 409/503 retries."""
    from jitr_core.services.broker import MAX_REQUEST_BYTES

    app = get_app()
    with _request_context(app, _headers(request)):
        if request.method != "POST":
            return _not_post(request)
        request.max_content_length = MAX_REQUEST_BYTES
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            request.max_content_length = None
            return _answer(413, {"error": f"the request exceeds {MAX_REQUEST_BYTES} bytes"})
        answer = app.broker.handle(body)
        response = _answer(answer.status, answer.body)
        response.headers.update(answer.headers)
        return response


@functions_framework.http
@_settles
def scaleup(request: flask.Request) -> flask.Response:
    """Jobs-queue messages: launch at most one runner VM per job attempt."""
    return _deliver(request, JOBS_QUEUE, lambda app: app.scaleup.handle)


@functions_framework.http
@_settles
def lifecycle(request: flask.Request) -> flask.Response:
    """Lifecycle-queue messages: a job started or ended on a runner."""
    return _deliver(request, LIFECYCLE_QUEUE, lambda app: app.lifecycle.handle)


@functions_framework.http
@_settles
def scaledown(request: flask.Request) -> flask.Response:
    """One scaledown run (Cloud Scheduler, every 5 minutes)."""
    return _periodic(request, "scaledown", lambda app: app.scaledown.run())


@functions_framework.http
@_settles
def rebalancer(request: flask.Request) -> flask.Response:
    """One rebalancer run (Cloud Scheduler, every minute)."""
    return _periodic(request, "rebalancer", lambda app: app.rebalancer.run())


def _deliver(request: flask.Request, queue: str, handler: Callable[[App], Callable[[str], str]]) -> flask.Response:
    if request.method != "POST":
        return _not_post(request)
    preimport.start()  # where no fork started it (functions-framework --debug)
    preimport.wait()  # importing beside it could fail this request
    app = get_app()
    headers = _headers(request)
    raw = request.get_data(cache=False)
    with _request_context(app, headers), _metrics(app, FUNCTIONS[queue]):
        try:
            delivery = events.parse(headers, raw)
        except events.MalformedEvent as exc:
            return _dead_letter(app, queue, raw, str(exc))
        with log_context(
            event_id=delivery.event_id or None,
            message_id=delivery.message_id or None,
            delivery_attempt=delivery.delivery_attempt,
            subscription=delivery.subscription or None,
        ):
            wait = _not_due_for(delivery.attributes)
            if wait > HOLD_LIMIT_S:
                return _not_due(app, queue, delivery, wait)
            if wait > 0:
                time.sleep(wait)
            try:
                outcome = consume(app.backend, queue, delivery.body, handler(app), delivery.attributes)
            except Exception:  # dead-lettering or re-sending failed: let Pub/Sub deliver it again
                log.exception("message could not be settled; Pub/Sub will redeliver", extra={"queue": queue})
                app.backend.metrics.record("function_errors", function=FUNCTIONS[queue])
                return _answer(503, {"retry": "the message could not be settled"})
            if outcome.disposition is Disposition.RETRY:
                return _answer(503, {"retry": outcome.detail})
            return _answer(200, {"done": outcome.detail})


def _not_due(app: App, queue: str, delivery: events.Delivery, wait: float) -> flask.Response:
    """A message delivered long before it is due goes back to Pub/Sub (a 503: redelivered after the
    retry policy's backoff). Each of those deliveries counts against the dead-letter policy, so on
    the next-to-last one it is published again instead, due at the same time with a fresh count,
    and this copy acknowledged: a long wait never dead-letters it. Never on its first delivery,
    which a copy just published would be, over and over (``max_deliveries`` below 3)."""
    attempt = delivery.delivery_attempt
    if attempt is None or attempt < max(2, gcp_config(app.settings).max_deliveries - 1):
        log.info("message not due yet; left for redelivery", extra={"queue": queue, "due_in_s": round(wait)})
        return _answer(503, {"retry": f"not due for {round(wait)} s"})
    attributes = {key: value for key, value in delivery.attributes.items() if key != NOT_BEFORE}
    try:
        app.backend.enqueue(queue, QueueMessage(delivery.body, attributes), delay_s=math.ceil(wait))
    except JitrError as exc:
        log.error("a message not due could not be published again", extra={"queue": queue, "reason": str(exc)})
        return _answer(503, {"retry": f"not due for {round(wait)} s"})
    log.info("message not due yet; published again", extra={"queue": queue, "due_in_s": round(wait)})
    return _answer(200, {"deferred": f"published again, due in {round(wait)} s"})


def _dead_letter(app: App, queue: str, raw: bytes, reason: str) -> flask.Response:
    log.error("malformed delivery dead-lettered", extra={"queue": queue, "reason": reason})
    try:
        app.backend.dead_letter(queue, QueueMessage(raw.decode("utf-8", errors="replace")), reason)
    except Exception:
        log.exception("dead-lettering a malformed delivery failed; Pub/Sub will redeliver", extra={"queue": queue})
        return _answer(503, {"retry": "the malformed delivery could not be dead-lettered"})
    return _answer(200, {"dead_lettered": reason})


def _periodic(request: flask.Request, name: str, run: Callable[[App], Mapping[str, Any]]) -> flask.Response:
    if request.method != "POST":
        return _not_post(request)
    preimport.start()  # where no fork started it (functions-framework --debug)
    preimport.wait()  # importing beside it could fail this request
    app = get_app()
    headers = _headers(request)
    raw = request.get_data(cache=False)
    event_id = headers.get("ce-id") or _message_id(headers, raw)
    job = headers.get("x-cloudscheduler-jobname")
    with _request_context(app, headers), _metrics(app, name), log_context(event_id=event_id, scheduler_job=job):
        try:
            report = run(app)
        except PassIncomplete as incomplete:  # each failed step has its line and reason already
            log.error(f"{name} run incomplete", extra={"report": incomplete.report})
            app.backend.metrics.record("function_errors", function=name)
            return _answer(500, {"error": f"{name} run incomplete", "report": incomplete.report})
        except Exception:
            log.exception(f"{name} run failed")
            app.backend.metrics.record("function_errors", function=name)
            return _answer(500, {"error": f"{name} run failed"})
        log.info(f"{name} run", extra={"report": report})
        return _answer(200, {"report": report})


def _message_id(headers: Mapping[str, str], raw: bytes) -> str | None:
    """The Pub/Sub message id when a scheduler message came through a topic; None for a plain call."""
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        return events.parse(headers, raw).event_id or None
    except events.MalformedEvent:
        return None


def _not_due_for(attributes: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(attributes.get(NOT_BEFORE, "0")) - time.time())
    except ValueError:
        return 0.0


def _headers(request: flask.Request) -> dict[str, str]:
    """The request's headers by lower-case name (what the core and :mod:`.events` read), made once."""
    return {name.lower(): value for name, value in request.headers.items()}


@contextmanager
def _request_context(app: App, headers: Mapping[str, str]) -> Iterator[None]:
    trace = events.trace_id(headers)
    project = app.settings.section("gcp").get("project")
    fields = {"trace": trace}
    if trace and project:
        fields[TRACE_FIELD] = f"projects/{project}/traces/{trace}"
    with log_context(**fields):
        yield


@contextmanager
def _metrics(app: App, function: str) -> Iterator[None]:
    """Count an error the request did not handle, and write the request's metrics once, as it ends."""
    try:
        yield
    except Exception:
        app.backend.metrics.record("function_errors", function=function)
        raise
    finally:
        app.flush_metrics()


def _not_post(request: flask.Request) -> flask.Response:
    """Only POSTs do work, so a probe or a crawler never runs a function or dead-letters its request."""
    response = _answer(405, {"error": f"expected POST, found {request.method}"})
    response.headers["Allow"] = "POST"
    return response


def _answer(status: int, body: Mapping[str, Any], text: str = "") -> flask.Response:
    """``body`` as JSON, or ``text`` when the answer was encoded ahead (a routed delivery's)."""
    return flask.Response(text or json.dumps(body, default=str), status=status, mimetype="application/json")
