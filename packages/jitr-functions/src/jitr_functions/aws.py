"""AWS Lambda handlers: ``jitr_functions.aws.webhook``, ``.scaleup``, ``.lifecycle``, ``.scaledown``, ``.rebalancer``,
``.broker``.

Each translates one platform event into one core call on the process-wide app (built on the
first invocation, the container's cold start). Importing this module costs no cloud SDK and no
GitHub client: the webhook function never loads either of the latter. In a Lambda container it
pauses the garbage collector until the first invocation ends (see ``coldstart.py``).
"""

from __future__ import annotations

from . import coldstart

coldstart.pause()  # before the imports below: they start what a cold start allocates

import base64  # noqa: E402
import binascii  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from collections.abc import Callable, Iterator, Mapping  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from jitr_core.errors import JitrError, PassIncomplete  # noqa: E402
from jitr_core.logs import log_context  # noqa: E402
from jitr_core.services.consume import Disposition, consume  # noqa: E402

from . import snapstart  # noqa: E402
from .app import App, get_app  # noqa: E402

log = logging.getLogger("jitr.lambda")
_JSON = {"content-type": "application/json"}
_BODY = json.JSONEncoder()  # json.dumps with its defaults, without its per-call check of them


class EventError(JitrError):
    """The Lambda event is not the kind this function is wired to receive (a deployment mistake)."""


def webhook(event: Any, context: Any) -> dict[str, Any]:
    """API Gateway HTTP API (v2), function URL or REST API (v1) request → the webhook service's answer."""
    try:
        with log_context(function="webhook", aws_request_id=getattr(context, "aws_request_id", None)):
            app = get_app()
            method, headers, body = _http_request(event)
            if method != "POST":
                return _http(405, {"error": f"webhooks are POSTed, found {method}"}, {"allow": "POST"})
            if body is None:
                return _http(400, {"error": "the body is not valid base64"})
            response = app.webhook.handle(headers, body)
            return _http(response.status, response.body, text=response.text)
    finally:
        coldstart.settle()


def broker(event: Any, context: Any) -> dict[str, Any]:
    """A VM's request (function URL or API Gateway) → its JIT config, once; refusals are 4xx, a retry 409/503."""
    with _invocation(context, "broker") as app:
        method, _, body = _http_request(event, "broker")
        if method != "POST":
            return _http(405, {"error": f"the broker is asked with POST, found {method}"}, {"allow": "POST"})
        if body is None:
            return _http(400, {"error": "the body is not valid base64"})
        answer = app.broker.handle(body)
        return _http(answer.status, answer.body, answer.headers)


def scaleup(event: Any, context: Any) -> dict[str, Any]:
    """A batch from the jobs queue → one scaleup per message; retried messages as batch item failures."""
    return _batch(event, context, "scaleup", "jobs", lambda app: app.scaleup.handle)


def lifecycle(event: Any, context: Any) -> dict[str, Any]:
    """A batch from the lifecycle queue → one lifecycle update per message."""
    return _batch(event, context, "lifecycle", "lifecycle", lambda app: app.lifecycle.handle)


def scaledown(event: Any, context: Any) -> dict[str, Any]:
    """A scheduled event (every 5 minutes) → one scaledown pass; returns its report."""
    return _periodic(event, context, "scaledown", lambda app: app.scaledown.run())


def rebalancer(event: Any, context: Any) -> dict[str, Any]:
    """A scheduled event (every minute) → one rebalancer pass; returns its report."""
    return _periodic(event, context, "rebalancer", lambda app: app.rebalancer.run())


@contextmanager
def _invocation(context: Any, function: str) -> Iterator[App]:
    """The app (built on the container's first invocation), with the request id bound to every log line;
    the metrics recorded are written once, as the invocation ends."""
    try:
        with log_context(function=function, aws_request_id=getattr(context, "aws_request_id", None)):
            app = get_app()
            try:
                yield app
            except Exception:
                app.backend.metrics.record("function_errors", function=function)
                raise
            finally:
                app.flush_metrics()
    finally:
        coldstart.settle()


def _http_request(event: Any, function: str = "webhook") -> tuple[str, Mapping[Any, Any], bytes | None]:
    """Method, headers (the service lower-cases them) and raw body bytes (None when the base64 body is invalid)."""
    # type() first: a dict (every event Lambda hands over) skips the Mapping ABC's check, Python code
    if type(event) is not dict and not isinstance(event, Mapping):
        raise _misrouted(function, "an HTTP request event", event)
    context = event.get("requestContext")
    if event.get("version") == "2.0" and (type(context) is dict or isinstance(context, Mapping)):
        method = str(context.get("http", {}).get("method", ""))
        raw_headers = event.get("headers") or {}
    elif "httpMethod" in event:
        method = str(event["httpMethod"])
        multi = event.get("multiValueHeaders") or {}
        raw_headers = {k: ",".join(v) for k, v in multi.items()} if multi else (event.get("headers") or {})
    else:
        raise _misrouted(function, "an HTTP request event", event)
    headers: Mapping[Any, Any] = raw_headers
    text = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return method.upper(), headers, text.encode()
    try:
        return method.upper(), headers, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return method.upper(), headers, None


def _http(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None, text: str = ""
) -> dict[str, Any]:
    """The function's HTTP answer; ``text``, when given, is ``body`` encoded already (json.dumps's way)."""
    return {
        "statusCode": status,
        "headers": {**_JSON, **headers} if headers else dict(_JSON),
        "body": text or _BODY.encode(body),
    }


def _batch(
    event: Any, context: Any, function: str, queue: str, handler: Callable[[App], Callable[[str], str]]
) -> dict[str, Any]:
    """Consume every record; those to retry are reported, so SQS redelivers only them."""
    failures: list[dict[str, str]] = []
    with _invocation(context, function) as app:
        records = _sqs_records(event, function)
        handle = handler(app)
        for record in records:
            with log_context(message_id=record["messageId"]):
                outcome = consume(app.backend, queue, record["body"], handle, _attributes(record))
            if outcome.disposition is Disposition.RETRY:
                failures.append({"itemIdentifier": record["messageId"]})
        log.info("batch done", extra={"queue": queue, "records": len(records), "retried": len(failures)})
    return {"batchItemFailures": failures}


def _sqs_records(event: Any, function: str) -> list[Mapping[str, Any]]:
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list) or not all(_is_sqs_record(r) for r in records):
        raise _misrouted(function, "an SQS batch (Records with messageId and body, eventSource aws:sqs)", event)
    return records


def _is_sqs_record(record: Any) -> bool:
    return (
        isinstance(record, Mapping)
        and record.get("eventSource") == "aws:sqs"
        and isinstance(record.get("messageId"), str)
        and isinstance(record.get("body"), str)
    )


def _attributes(record: Mapping[str, Any]) -> dict[str, str]:
    """The string message attributes (jitr sends only strings; SQS's others are left out)."""
    attributes = record.get("messageAttributes") or {}
    return {
        str(name): str(value["stringValue"])
        for name, value in attributes.items()
        if isinstance(value, Mapping) and "stringValue" in value
    }


def _periodic(event: Any, context: Any, function: str, run: Callable[[App], dict[str, Any]]) -> dict[str, Any]:
    """Any invocation that is not another trigger's event runs the pass (EventBridge, Scheduler, a manual invoke)."""
    with _invocation(context, function) as app:
        if not isinstance(event, Mapping) or any(key in event for key in ("Records", "requestContext", "httpMethod")):
            raise _misrouted(function, "a scheduled event", event)
        with log_context(event_id=event.get("id")):
            try:
                report = run(app)
            except PassIncomplete as incomplete:  # still raised: the invocation fails, for the error alarm
                log.error("periodic run incomplete", extra={"report": incomplete.report})
                raise
        log.info("periodic run", extra={"report": report})
    return report


def _misrouted(function: str, expected: str, event: Any) -> EventError:
    if isinstance(event, Mapping):
        found = f"an object with keys {sorted(str(k) for k in event)[:8]}"
    else:
        found = type(event).__name__
    error = EventError(f"the {function} function expects {expected}, found {found}; check its trigger")
    log.error("unexpected event", extra={"reason": str(error)})
    return error


snapstart.prime()  # SnapStart or provisioned concurrency: build the app during INIT (see snapstart.py)
