"""The last step of GitHub's App manifest flow: exchange the one-time ``code`` for the new App.

``POST /app-manifests/{code}/conversions`` needs no authentication and answers, once, the App's
id and slug with its private key, client secret and webhook secret. The secrets come back as
:class:`~jitr_core.secret.Secret` so no repr, log line or error carries them. A code works once
and for an hour; a 5xx or a dropped connection is retried, and a 404 after such a retry says
that the first attempt may have created the App already.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from jitr_core.errors import GitHubError, GitHubNotFoundError, GitHubUnavailableError
from jitr_core.logs import register_secret
from jitr_core.secret import Secret

from . import __version__
from .transport import API_VERSION

log = logging.getLogger("jitr.github")


@dataclass(frozen=True, slots=True)
class CreatedApp:
    """A GitHub App registered from a manifest. Only the ``Secret`` fields are secret."""

    id: int
    slug: str
    node_id: str
    name: str
    owner: str
    html_url: str
    client_id: str
    permissions: Mapping[str, str]
    events: tuple[str, ...]
    pem: Secret = field(repr=False)
    client_secret: Secret = field(repr=False)
    webhook_secret: Secret | None = field(repr=False)

    @property
    def install_url(self) -> str:
        """Where the owner installs the App on accounts and repositories."""
        return f"{self.html_url.rstrip('/')}/installations/new"


def convert_manifest_code(
    api_url: str,
    code: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    max_retries: int = 2,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CreatedApp:
    """Exchange a manifest ``code`` for the App it created, at ``api_url`` (github.com or a GHES ``/api/v3``).

    :raises GitHubNotFoundError: the code is unknown, was already exchanged or expired.
    :raises GitHubUnavailableError: GitHub kept failing (5xx or no connection).
    :raises GitHubError: any other refusal, or an answer without the App's credentials.
    """
    base = api_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GitHubError(f"the GitHub API URL must be http(s)://host[/path], got {api_url!r}")
    if not code or not code.isprintable() or len(code) > 200:
        raise GitHubError("the manifest code GitHub sent back is empty or malformed")
    path = "/app-manifests/{code}/conversions"
    url = f"{base}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": f"jitr-github/{__version__}",
    }
    http = session or requests.Session()
    attempt = 0
    try:
        while True:
            attempt += 1
            reason = ""
            try:
                response = http.post(url, headers=headers, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                reason, status = type(exc).__name__, None  # not answered, or cut off mid-answer: again
            except requests.RequestException as exc:
                raise GitHubError(f"cannot send POST {path} ({type(exc).__name__})") from None
            else:
                status = response.status_code
                if status == 201:
                    return _created(response)
                if status < 500:
                    raise _refusal(status, path, _message(response), retried=attempt > 1)
                reason = f"HTTP {status}"
            if attempt > max_retries:
                raise GitHubUnavailableError(
                    f"GitHub did not convert the manifest code: POST {path} failed {attempt} times ({reason})", status
                )
            log.warning("github manifest conversion failed, retrying", extra={"reason": reason, "attempt": attempt})
            sleep(backoff_s * attempt)
    finally:
        if session is None:
            http.close()


def _refusal(status: int, path: str, message: str, retried: bool) -> GitHubError:
    if status == 404:
        hint = (
            "; an earlier attempt that failed may have created the App: look for it in your GitHub App settings"
            if retried
            else " (a code works once, within an hour)"
        )
        return GitHubNotFoundError(f"GitHub does not know this manifest code: POST {path} answered 404{hint}", 404)
    return GitHubError(f"GitHub answered {status} to POST {path}: {message}", status)


def _message(response: requests.Response) -> str:
    """GitHub's error message and validation errors, short; never the whole body."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return response.reason or "no message"
    if not isinstance(data, dict):
        return response.reason or "no message"
    errors = data.get("errors")
    detail = f" ({'; '.join(str(e) for e in errors)})" if isinstance(errors, list) and errors else ""
    return (str(data.get("message") or response.reason or "no message") + detail)[:300]


def _created(response: requests.Response) -> CreatedApp:
    try:
        data: Any = response.json()
        owner = data.get("owner") or {}
        webhook_secret = data.get("webhook_secret")
        pem, client_secret = data["pem"], data["client_secret"]
        if not isinstance(pem, str) or "PRIVATE KEY" not in pem or not isinstance(client_secret, str):
            raise ValueError("pem")
        for value in (pem, client_secret, webhook_secret):
            if isinstance(value, str):
                register_secret(value)  # jitr's log formatter redacts it from then on
        return CreatedApp(
            id=int(data["id"]),
            slug=str(data["slug"]),
            node_id=str(data.get("node_id", "")),
            name=str(data["name"]),
            owner=str(owner.get("login") or owner.get("slug") or ""),
            html_url=str(data["html_url"]),
            client_id=str(data["client_id"]),
            permissions={str(k): str(v) for k, v in (data.get("permissions") or {}).items()},
            events=tuple(str(e) for e in data.get("events") or ()),
            pem=Secret(pem),
            client_secret=Secret(client_secret),
            webhook_secret=Secret(webhook_secret) if isinstance(webhook_secret, str) and webhook_secret else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise GitHubError(
            f"GitHub's answer to the manifest conversion has an unexpected shape ({type(exc).__name__})"
        ) from None
