"""Verify a GCE instance's identity: the metadata server's Google-signed identity token.

The proof is ``{"token": <the JWT from instance/service-accounts/default/identity?audience=
<broker URL>&format=full>}``. google-auth checks its RS256 signature against Google's keys
(``[gcp] identity_certs_url``, fetched over HTTP and cached for their ``Cache-Control`` max-age),
its expiry (an hour after issue) and that its ``aud`` is the broker's audience. This module adds
the issuer (``accounts.google.com``) and the ``google.compute_engine`` claims that only
``format=full`` tokens carry: the instance's name, zone and project, which must be the configured
``[gcp] project``. The identity's VM id is jitr's id of the instance, ``ZONE/NAME`` (as
:func:`jitr_gcp.compute.vm_id` writes it into the runner record the broker compares it with).
A token is valid for its whole hour, so it cannot stop replay: the broker does, answering each
VM once through its own record write.

Refusals are :class:`~jitr_core.errors.IdentityError` with reasons of this module's wording:
google-auth's own messages may quote the token and are never passed on.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from google.auth import exceptions, transport
from google.oauth2 import id_token
from jitr_core.errors import BackendError, IdentityError
from jitr_core.identity import proof_field
from jitr_core.model import VMIdentity

from .config import PROVIDER, GcpConfig

ISSUERS = ("accounts.google.com", "https://accounts.google.com")
MAX_TOKEN_CHARS = 8192  # a format=full token is about 1 KB
FETCH_TIMEOUT_S = 10.0
DEFAULT_KEYS_TTL_S = 300.0
MAX_KEYS_TTL_S = 86400.0
# At most one refetch of the keys per this many seconds for a token signed by an unlisted key
# (Google rotated its keys), so forged key ids cannot make the broker hammer the key server.
MIN_REFRESH_S = 60.0
CLOCK_SKEW_S = 60  # GCE instances and Google keep their clocks in sync

_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_MAX_AGE = re.compile(r"max-age=(\d+)")
_INSTANCE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REASONS = (  # google-auth's ValueError wording -> a reason safe to log
    ("expired", "the identity token has expired"),
    ("too early", "the identity token is not valid yet"),
    ("audience", "the identity token is for another audience"),
    ("not found", "the identity token is signed by a key Google does not list"),
    ("signature", "the identity token's signature does not verify with Google's keys"),
)
UNKNOWN_KEY = _REASONS[3][1]


class KeyCache(transport.Request):
    """A google-auth transport that keeps successful GETs (Google's keys) for their max-age."""

    def __init__(self, min_refresh_s: float = MIN_REFRESH_S) -> None:
        import google.auth.transport.requests

        self._request = google.auth.transport.requests.Request()
        self._min_refresh_s = min_refresh_s
        self._cached: dict[str, tuple[float, float, transport.Response]] = {}  # url -> fetched, expires, answer
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        now = time.monotonic()
        with self._lock:
            hit = self._cached.get(url)
        if method == "GET" and hit is not None and hit[1] > now:
            return hit[2]
        response = self._request(url, method, body, headers, timeout or FETCH_TIMEOUT_S, **kwargs)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cached[url] = (now, now + _max_age(response.headers), response)
        return response

    def refresh(self, url: str) -> bool:
        """Forget ``url``'s keys so the next call fetches them, unless fetched within ``min_refresh_s``."""
        with self._lock:
            hit = self._cached.get(url)
            if hit is None or time.monotonic() - hit[0] < self._min_refresh_s:
                return False
            del self._cached[url]
            return True


_keys: KeyCache | None = None
_keys_lock = threading.Lock()


def key_cache() -> KeyCache:
    """The process's cache of Google's keys."""
    global _keys
    with _keys_lock:
        if _keys is None:
            _keys = KeyCache()
        return _keys


def verify(proof: Mapping[str, str], audience: str, config: GcpConfig) -> VMIdentity:
    """Verify ``proof`` for the broker's ``audience`` under the ``[gcp]`` settings of ``config``."""
    return verify_identity_token(proof, audience, config.project, config.identity_certs_url, key_cache())


def verify_identity_token(
    proof: Mapping[str, str], audience: str, project: str, certs_url: str, keys: KeyCache
) -> VMIdentity:
    """The identity ``proof`` proves for ``audience`` in ``project``; IdentityError otherwise."""
    token = proof_field(proof, "token", MAX_TOKEN_CHARS, "GCP")
    if not _JWT.match(token):
        raise IdentityError("the identity token is not a JWT")
    if not audience:
        raise IdentityError("no audience to check the identity token against")
    try:
        claims = _claims(token, audience, certs_url, keys)
    except IdentityError as exc:
        if exc.reason != UNKNOWN_KEY or not keys.refresh(certs_url):
            raise
        claims = _claims(token, audience, certs_url, keys)  # Google may have rotated its keys
    if claims.get("iss") not in ISSUERS:
        raise IdentityError("the identity token is not issued by Google (iss is not accounts.google.com)")
    google = claims.get("google")
    compute = google.get("compute_engine") if isinstance(google, Mapping) else None
    if not isinstance(compute, Mapping):
        raise IdentityError("the identity token has no compute_engine claims (request it with format=full)")
    found = _claim(compute, "project_id", _PROJECT)
    if found != project:
        raise IdentityError(f"the identity token is from project {found}, not the configured project {project}")
    issued_at = claims.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        raise IdentityError("the identity token has no issue time")
    zone = _claim(compute, "zone", _ZONE)
    return VMIdentity(
        PROVIDER,
        vm_id=f"{zone}/{_claim(compute, 'instance_name', _INSTANCE_NAME)}",  # compute.vm_id's form
        zone=zone,
        account=found,
        issued_at=float(issued_at),
    )


def _claims(token: str, audience: str, certs_url: str, keys: KeyCache) -> Mapping[str, Any]:
    try:
        claims = id_token.verify_token(
            token, keys, audience=audience, certs_url=certs_url, clock_skew_in_seconds=CLOCK_SKEW_S
        )
    except exceptions.TransportError as exc:
        raise BackendError(f"could not fetch Google's keys from {certs_url}: {type(exc).__name__}") from None
    except (ValueError, exceptions.GoogleAuthError) as exc:
        text = str(exc).lower()
        reason = next((why for needle, why in _REASONS if needle in text), "the identity token is malformed")
        raise IdentityError(reason) from None
    except RecursionError:  # a header or claims segment nested past the parser's depth
        raise IdentityError("the identity token is malformed") from None
    if not isinstance(claims, Mapping):
        raise IdentityError("the identity token is malformed")
    return claims


def _claim(compute: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = compute.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise IdentityError(f"the identity token's compute_engine.{key} is missing or malformed")
    return value


def _max_age(headers: Mapping[str, str]) -> float:
    match = _MAX_AGE.search(headers.get("cache-control") or headers.get("Cache-Control") or "")
    return min(float(match.group(1)), MAX_KEYS_TTL_S) if match else DEFAULT_KEYS_TTL_S
