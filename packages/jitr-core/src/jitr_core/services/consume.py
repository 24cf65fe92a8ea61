"""What to do with one queue message after a service handled it — shared by every runtime.

Lambda, Cloud Run and the embedded workers translate the :class:`Outcome` into their platform's
terms (a batch item failure, a non-2xx answer, a visibility timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from ..backend import Backend
from ..errors import GitHubRateLimitError, JitrError, PayloadError, RetryLaterError
from ..model import QueueMessage

log = logging.getLogger("jitr.consume")
FUNCTIONS = {"jobs": "scaleup", "lifecycle": "lifecycle"}  # the function that consumes each queue


class Disposition(Enum):
    DONE = "done"  # acknowledge
    RETRY = "retry"  # leave it for the queue to deliver again (counts toward the dead-letter limit)


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: Disposition
    detail: str = ""


def consume(
    backend: Backend,
    queue: str,
    body: str,
    handle: Callable[[str], str],
    attributes: Mapping[str, str] | None = None,
    last_try: bool = False,
) -> Outcome:
    """Run ``handle`` on a message body and decide its fate.

    Poison (malformed) messages go to the dead-letter queue at once with the reason; work that
    must wait (caps, a claim held elsewhere, a tenant's GitHub rate limit) is re-sent with a delay
    and acknowledged, so waiting never pushes a good message toward the dead-letter queue nor
    holds a worker that other tenants' messages need; other failures are retried, and on the
    ``last_try`` the queue allows they are dead-lettered with their reason (a broken plugin named).
    """
    try:
        return Outcome(Disposition.DONE, handle(body))
    except PayloadError as exc:
        log.error("poison message dead-lettered", extra={"queue": queue, "reason": str(exc)})
        backend.dead_letter(queue, QueueMessage(body, dict(attributes or {})), str(exc))
        return Outcome(Disposition.DONE, f"dead-lettered: {exc}")
    except RetryLaterError as exc:
        backend.enqueue(queue, QueueMessage(body, dict(attributes or {})), delay_s=min(exc.delay_s, 900))
        log.info("message deferred", extra={"queue": queue, "reason": str(exc), "delay_s": exc.delay_s})
        return Outcome(Disposition.DONE, f"deferred: {exc}")
    except GitHubRateLimitError as exc:
        delay = min(max(1, int(exc.retry_after + 0.999)), 900)
        backend.enqueue(queue, QueueMessage(body, dict(attributes or {})), delay_s=delay)
        log.warning("message deferred by a GitHub rate limit", extra={"queue": queue, "delay_s": delay})
        return Outcome(Disposition.DONE, f"deferred: {exc}")
    except JitrError as exc:
        _failed(backend, queue)
        if last_try:
            return _give_up(backend, queue, body, attributes, str(exc))
        log.warning("message will be retried", extra={"queue": queue, "reason": str(exc)})
        return Outcome(Disposition.RETRY, str(exc))
    except Exception as exc:
        log.exception("unexpected failure", extra={"queue": queue, "last_try": last_try})
        _failed(backend, queue)
        if last_try:
            return _give_up(backend, queue, body, attributes, f"unexpected {type(exc).__name__}")
        return Outcome(Disposition.RETRY, f"unexpected {type(exc).__name__}")


def _failed(backend: Backend, queue: str) -> None:
    backend.metrics.record("function_errors", function=FUNCTIONS.get(queue, queue))


def _give_up(backend: Backend, queue: str, body: str, attributes: Mapping[str, str] | None, reason: str) -> Outcome:
    log.error("message failed on its last try; dead-lettered", extra={"queue": queue, "reason": reason})
    backend.dead_letter(queue, QueueMessage(body, dict(attributes or {})), f"failed on its last try: {reason}")
    return Outcome(Disposition.DONE, f"dead-lettered: {reason}")
