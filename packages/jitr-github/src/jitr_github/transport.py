"""One GitHub REST call, done resiliently: timeouts, retries, rate limits, conditional requests.

- Connection errors, timeouts and 5xx answers are retried with exponential backoff and jitter.
- Rate limits (429, and 403 with ``retry-after`` or ``x-ratelimit-remaining: 0``) are waited out
  when the wait is short, and raised as :class:`GitHubRateLimitError` when it is not; a
  principal known to be exhausted is not called again before its reset.
- GETs marked conditional send the remembered ``ETag`` as ``If-None-Match``; a 304 (which
  costs no rate limit) returns the remembered body.
- A 401 on an installation token drops the token and tries once more with a fresh one.
- Within :func:`jitr_core.github.calls_done_by`, no wait, retry or read goes past the caller's
  deadline: what would is raised at once (``GitHubRateLimitError`` for a rate-limit wait).
- Every other failure maps onto the ``GitHubError`` hierarchy. Messages and logs carry the
  method, path and status, never a header or a body: tokens, JWTs and JIT configs stay out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from jitr_core.errors import (
    GitHubAuthError,
    GitHubConflictError,
    GitHubError,
    GitHubNotFoundError,
    GitHubRateLimitError,
    GitHubUnavailableError,
)
from jitr_core.github import calls_deadline
from jitr_core.secret import Secret

from .ratelimit import RateLimit, rate_limit_wait, retry_after_s

log = logging.getLogger("jitr.github")

API_VERSION = "2022-11-28"
ETAG_CACHE_SIZE = 2048


@dataclass(frozen=True, slots=True)
class Credential:
    """How to authenticate one call: as the App (JWT) or as an installation (token)."""

    principal: str  # "app" or "installation:<id>": the rate-limit bucket, safe to log
    fetch: Callable[[], Secret]
    refused: Callable[[Secret], None] | None = None  # called on 401; the call is then tried once more


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any = field(repr=False)
    next_url: str | None = None


class Transport:
    """Sends calls to one GitHub API base URL (github.com or a GHES ``/api/v3``). Thread-safe."""

    def __init__(
        self,
        api_url: str,
        *,
        session: requests.Session,
        timeout: float,
        max_retries: int,
        backoff_s: float,
        backoff_max_s: float,
        max_rate_limit_wait_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
        user_agent: str,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        origin = urlsplit(self.api_url)
        if origin.scheme not in ("http", "https") or not origin.netloc:
            raise GitHubError(f"the GitHub API URL must be http(s)://host[/path], got {api_url!r}")
        self._origin = (origin.scheme, origin.netloc)
        self._session = session
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._max_wait_s = max_rate_limit_wait_s
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": user_agent,
        }
        self._lock = threading.Lock()
        self._limits: dict[str, RateLimit] = {}
        self._etags: OrderedDict[tuple[str, str], tuple[str, Any, str | None]] = OrderedDict()

    # -- rate limits ------------------------------------------------------------------------

    def rate_limits(self) -> dict[str, RateLimit]:
        """The last core rate limit seen per principal."""
        with self._lock:
            return dict(self._limits)

    def lowest_remaining(self) -> int | None:
        """The fewest requests left in any principal's current window; None when none is known."""
        now = self._clock()
        with self._lock:
            return min((limit.remaining for limit in self._limits.values() if limit.reset > now), default=None)

    def _note_limit(self, principal: str, headers: Mapping[str, str]) -> None:
        """Keep the principal's core window, which every call but a few spends. GitHub counts some
        calls in buckets of their own (runner registrations, search): one of those spent says
        nothing of the others, and a call that needs it is refused with a 403/429, waited on then."""
        limit = RateLimit.from_headers(headers)
        if limit is not None and limit.resource == "core":
            with self._lock:
                self._limits[principal] = limit

    def _wait_if_exhausted(self, principal: str, method: str, path: str, deadline: float | None) -> None:
        with self._lock:
            limit = self._limits.get(principal)
        if limit is None or limit.remaining > 0:
            return
        wait = limit.reset - self._clock()
        if wait <= 0:
            return
        if wait > self._max_wait_s or self._passes(deadline, wait):
            raise GitHubRateLimitError(
                f"rate limit of {principal} is exhausted until its reset in {wait:.0f}s; not calling {method} {path}",
                retry_after=wait,
                status=None,
            )
        log.warning(
            "github rate limit exhausted, waiting for its reset",
            extra={"principal": principal, "http_method": method, "http_path": path, "delay_s": round(wait, 3)},
        )
        self._sleep(wait)
        with self._lock:
            self._limits.pop(principal, None)

    # -- calls ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.api_url + path

    def request(
        self,
        method: str,
        url: str,
        credential: Credential,
        *,
        body: Mapping[str, Any] | None = None,
        conditional: bool = False,
    ) -> Reply:
        """Call ``url`` (absolute, on the API's origin) and return the decoded 2xx answer."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise GitHubError(f"refusing to send credentials to {parts.scheme}://{parts.netloc}, not the API's host")
        path = parts.path
        failures = rate_waits = 0
        retried_auth = False
        deadline = calls_deadline()
        while True:
            self._wait_if_exhausted(credential.principal, method, path, deadline)
            secret = credential.fetch()
            headers = dict(self._headers, Authorization=f"Bearer {secret.reveal()}")
            cache_key = (credential.principal, url)
            cached = None
            if conditional:
                with self._lock:
                    cached = self._etags.get(cache_key)
                if cached is not None:
                    headers["If-None-Match"] = cached[0]
            started = time.monotonic()
            try:
                timeout = self._timeout if deadline is None else self._time_left(deadline, method, path)
                response = self._session.request(method, url, json=body, headers=headers, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                reason = type(exc).__name__
                if failures < self._max_retries:
                    failures += 1
                    self._backoff(failures, method, path, reason, None, deadline)
                    continue
                raise GitHubUnavailableError(
                    f"GitHub did not answer {method} {path} after {failures + 1} attempts ({reason})"
                ) from None
            except requests.RequestException as exc:
                raise GitHubError(f"cannot send {method} {path} ({type(exc).__name__})") from None
            status = response.status_code
            self._note_limit(credential.principal, response.headers)
            log.debug(
                "github call",
                extra={
                    "http_method": method,
                    "http_path": path,
                    "http_status": status,
                    "principal": credential.principal,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            if status == 304 and cached is not None:  # unchanged, the next page's link with it
                with self._lock:
                    self._etags.move_to_end(cache_key)
                return Reply(200, cached[1], cached[2])
            if 200 <= status < 300:
                data = _decode(response)
                next_url = response.links.get("next", {}).get("url")
                etag = response.headers.get("ETag")
                if conditional and etag:
                    with self._lock:
                        self._etags[cache_key] = (etag, data, next_url)
                        self._etags.move_to_end(cache_key)
                        while len(self._etags) > ETAG_CACHE_SIZE:
                            self._etags.popitem(last=False)
                return Reply(status, data, next_url)
            message = _message(response)
            wait = rate_limit_wait(status, response.headers, message, self._clock())
            if wait is not None:
                if wait <= self._max_wait_s and rate_waits < self._max_retries and not self._passes(deadline, wait):
                    rate_waits += 1
                    log.warning(
                        "github rate limit, waiting",
                        extra={"http_method": method, "http_path": path, "http_status": status, "delay_s": wait},
                    )
                    self._sleep(wait)
                    continue
                raise GitHubRateLimitError(
                    f"GitHub rate limited {method} {path} ({status}: {message}); retry after {wait:.0f}s",
                    retry_after=wait,
                    status=status,
                )
            if status >= 500:
                if failures < self._max_retries:
                    failures += 1
                    retry_after = retry_after_s(response.headers, self._clock())
                    self._backoff(failures, method, path, f"HTTP {status}", retry_after, deadline)
                    continue
                raise GitHubUnavailableError(
                    f"GitHub answered {status} to {method} {path} after {failures + 1} attempts: {message}", status
                )
            if status == 401 and credential.refused is not None and not retried_auth:
                retried_auth = True
                credential.refused(secret)
                continue
            raise _error(status, f"GitHub answered {status} to {method} {path}: {message}")

    def _time_left(self, deadline: float, method: str, path: str) -> float:
        """The read timeout of an attempt made under ``deadline``; none left is a GitHubUnavailableError."""
        left = deadline - self._clock()
        if left <= 0:
            raise GitHubUnavailableError(f"no time left to call {method} {path}: the caller's deadline has passed")
        return min(self._timeout, left)

    def _passes(self, deadline: float | None, wait: float) -> bool:
        """Whether waiting ``wait`` seconds now would end past ``deadline``."""
        return deadline is not None and self._clock() + wait > deadline

    def _backoff(
        self, failures: int, method: str, path: str, reason: str, retry_after: float | None, deadline: float | None
    ) -> None:
        delay = min(self._backoff_max_s, self._backoff_s * 2 ** (failures - 1)) * (0.5 + self._jitter() / 2)
        if retry_after is not None and retry_after <= self._max_wait_s:
            delay = max(delay, retry_after)
        if self._passes(deadline, delay):
            raise GitHubUnavailableError(
                f"GitHub did not answer {method} {path} ({reason}), and the caller's deadline leaves no time to retry"
            )
        log.warning(
            "github call failed, retrying",
            extra={
                "http_method": method,
                "http_path": path,
                "reason": reason,
                "attempt": failures,
                "delay_s": round(delay, 3),
            },
        )
        self._sleep(delay)


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        raise GitHubError(
            f"GitHub answered {response.status_code} with a body that is not JSON", response.status_code
        ) from None


def _message(response: requests.Response) -> str:
    """GitHub's error message, short; never the whole body."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return response.reason or "no message"
    message = data.get("message") if isinstance(data, dict) else None
    return str(message)[:200] if message else (response.reason or "no message")


def _error(status: int, message: str) -> GitHubError:
    if status == 404:
        return GitHubNotFoundError(message, status)
    if status == 409:
        return GitHubConflictError(message, status)
    if status in (401, 403):
        return GitHubAuthError(message, status)
    return GitHubError(message, status)
