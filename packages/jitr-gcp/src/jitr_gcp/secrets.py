"""Secrets in Secret Manager: read (cached per process for ``secret_cache_ttl_s``) and stored.

A reference is a version (``projects/P/secrets/S/versions/V``), a secret (``projects/P/secrets/S``,
meaning its ``latest`` version) or a short name ``S`` in the configured project. The cache keeps a
warm function instance from paying an API call per webhook while still picking up a rotated
secret within the TTL. Storing creates the secret when it is absent (automatic replication,
label ``managed-by=jitr``) and adds a version. Errors name the secret and its resource, never
its value.
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING

from jitr_core.errors import BackendError, SecretNotFoundError, SettingsError
from jitr_core.logs import register_secret
from jitr_core.secret import Secret

from .clients import anonymous_if_local, bounded, cached_client
from .config import GcpConfig

if TYPE_CHECKING:
    from google.cloud import secretmanager

_SEGMENT = r"[A-Za-z0-9_-]{1,255}"
_VERSION = re.compile(rf"^projects/[^/\s]+/secrets/{_SEGMENT}/versions/(latest|[0-9]+)$")
_SECRET = re.compile(rf"^projects/[^/\s]+/secrets/{_SEGMENT}$")
_SHORT = re.compile(rf"^{_SEGMENT}$")

_cache: dict[tuple[str, str], tuple[str, float]] = {}
_cache_lock = threading.Lock()


def resource_name(name: str, reference: str, cfg: GcpConfig) -> str:
    """The version resource a reference points at."""
    reference = reference.strip()
    if _VERSION.match(reference):
        return reference
    if _SECRET.match(reference):
        return f"{reference}/versions/latest"
    if _SHORT.match(reference):
        return f"projects/{cfg.project}/secrets/{reference}/versions/latest"
    raise SettingsError(
        f"secret {name!r} refers to {reference!r}, which is not a Secret Manager name (projects/P/secrets/S"
        f"[/versions/V] or S); env:/file: references need JITR_SECRETS_PROVIDER=embedded"
    )


def _client(cfg: GcpConfig) -> secretmanager.SecretManagerServiceClient:
    def build() -> secretmanager.SecretManagerServiceClient:
        from google.cloud import secretmanager

        options = {"api_endpoint": cfg.secretmanager_endpoint} if cfg.secretmanager_endpoint else None
        return secretmanager.SecretManagerServiceClient(
            transport="rest", credentials=anonymous_if_local(cfg.secretmanager_endpoint), client_options=options
        )

    return cached_client(("secretmanager", cfg.secretmanager_endpoint), build)


def fetch(name: str, reference: str, cfg: GcpConfig) -> str:
    """The value of secret ``name``; raises SecretNotFoundError when it is missing, disabled or empty."""
    resource = resource_name(name, reference, cfg)
    if not cfg.secret_cache_ttl_s:
        return _access(name, resource, cfg)
    key = (cfg.secretmanager_endpoint, resource)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    value = _access(name, resource, cfg)
    with _cache_lock:
        _cache[key] = (value, now + cfg.secret_cache_ttl_s)
    return value


def _access(name: str, resource: str, cfg: GcpConfig) -> str:
    from google.api_core import exceptions

    try:
        response = _client(cfg).access_secret_version(name=resource, **bounded(cfg.operation_timeout_s))
    except exceptions.NotFound:
        raise SecretNotFoundError(f"secret {name!r} not found in Secret Manager ({resource})") from None
    except exceptions.BadRequest as exc:  # REST answers FAILED_PRECONDITION (disabled, destroyed) as a 400
        raise SecretNotFoundError(f"secret {name!r} ({resource}) cannot be read: {exc.message}") from None
    except exceptions.PermissionDenied:
        raise BackendError(
            f"not allowed to read secret {name!r} ({resource}); grant roles/secretmanager.secretAccessor"
        ) from None
    except exceptions.GoogleAPICallError as exc:
        raise BackendError(f"reading secret {name!r} ({resource}) failed: HTTP {exc.code}") from None
    except exceptions.RetryError:
        raise BackendError(
            f"Secret Manager kept failing for secret {name!r} for {cfg.operation_timeout_s}s; try again later"
        ) from None
    except OSError as exc:  # the REST transport's connection errors and timeouts
        raise BackendError(f"Secret Manager could not be reached for secret {name!r}: {type(exc).__name__}") from None
    try:
        value = response.payload.data.decode("utf-8")
    except UnicodeDecodeError:  # a binary file uploaded by mistake (a DER key, say)
        raise SecretNotFoundError(f"secret {name!r} ({resource}) is not UTF-8 text") from None
    if not value:
        raise SecretNotFoundError(f"secret {name!r} ({resource}) is empty")
    register_secret(value)  # jitr's log formatter now redacts it, should anything try to log it
    return value


def secret_name(name: str, reference: str, cfg: GcpConfig) -> str:
    """The secret resource (``projects/P/secrets/S``) a reference's new versions belong to."""
    version = resource_name(name, reference, cfg)
    secret, _, pinned = version.rpartition("/versions/")
    if pinned != "latest":
        raise SettingsError(
            f"secret {name!r} refers to version {pinned} of {secret}, so a new version would never be read; "
            f"point it at {secret} (its latest version) to store a value"
        )
    return secret


def store(name: str, reference: str, value: Secret, cfg: GcpConfig) -> bool:
    """Add ``value`` as the newest version of the secret; True when the secret had to be created first."""
    from google.api_core import exceptions

    secret = secret_name(name, reference, cfg)
    text = value.reveal()
    if not text:
        raise SettingsError(f"secret {name!r}: refusing to store an empty value in {secret}")
    register_secret(text)
    project, _, secret_id = secret.removeprefix("projects/").partition("/secrets/")
    client = _client(cfg)
    created = True
    try:
        try:
            client.create_secret(
                request={
                    "parent": f"projects/{project}",
                    "secret_id": secret_id,
                    "secret": {"replication": {"automatic": {}}, "labels": {"managed-by": "jitr"}},
                },
                timeout=cfg.operation_timeout_s,
            )
        except exceptions.Conflict:  # ALREADY_EXISTS
            created = False
        client.add_secret_version(
            request={"parent": secret, "payload": {"data": text.encode("utf-8")}}, timeout=cfg.operation_timeout_s
        )
    except exceptions.PermissionDenied:
        raise BackendError(
            f"not allowed to store secret {name!r} ({secret}); grant roles/secretmanager.admin, or create the "
            f"secret and grant roles/secretmanager.secretVersionAdder"
        ) from None
    except exceptions.NotFound:
        raise SecretNotFoundError(f"secret {name!r}: {secret} could not be found or created") from None
    except exceptions.GoogleAPICallError as exc:
        raise BackendError(f"storing secret {name!r} ({secret}) failed: HTTP {exc.code}") from None
    except OSError as exc:
        raise BackendError(f"Secret Manager could not be reached for secret {name!r}: {type(exc).__name__}") from None
    with _cache_lock:
        for key in [k for k in _cache if k[1].startswith(secret + "/versions/")]:
            del _cache[key]
    return created
