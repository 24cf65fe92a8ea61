"""Secrets in AWS Secrets Manager: read (cached per process for ``secret_cache_ttl_s``) and stored.

A reference is a secret name or ARN, optionally followed by ``#key`` to pick one key of a secret
stored as a JSON object. Storing creates a secret by name, or puts a new version of an existing
one (an ARN names a secret that must exist). Errors name the jitr secret and the Secrets Manager
secret, never a value.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError
from jitr_core.errors import BackendError, JitrError, SecretNotFoundError, SettingsError
from jitr_core.logs import register_secret
from jitr_core.secret import Secret

from .clients import client
from .config import AwsConfig
from .faults import backend_error, error_code

_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$")
# Secrets Manager's answers for a secret that does not exist, or no longer does (scheduled for deletion).
_ABSENT = frozenset({"ResourceNotFoundException", "InvalidRequestException"})

_lock = threading.Lock()
_cache: dict[tuple[str, str | None, str], tuple[float, str]] = {}


def _parse(name: str, reference: str) -> tuple[str, str]:
    """The secret id and the JSON key (empty for the whole secret) of a reference."""
    secret_id, has_key, json_key = reference.partition("#")
    if not (_SECRET_NAME.match(secret_id) or _SECRET_ARN.match(secret_id)) or (has_key and not json_key):
        raise SettingsError(
            f"secret {name!r} refers to {reference!r}, which is not a Secrets Manager secret name or ARN "
            f"(optionally with #key); set JITR_SECRETS_{name.upper()}"
        )
    return secret_id, json_key


def fetch(name: str, reference: str, config: AwsConfig) -> str:
    """The value of jitr's secret ``name``, stored in Secrets Manager at ``reference``."""
    secret_id, json_key = _parse(name, reference)
    text = _secret_string(name, secret_id, config)
    if json_key:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise SecretNotFoundError(f"secret {name!r}: {secret_id!r} is not a JSON object with key {json_key!r}")
        if json_key not in document:
            raise SecretNotFoundError(f"secret {name!r}: {secret_id!r} has no key {json_key!r}")
        value = document[json_key]
        if not isinstance(value, str):
            raise SecretNotFoundError(f"secret {name!r}: key {json_key!r} of {secret_id!r} is not a string")
        text = value
    if not text:
        raise SecretNotFoundError(f"secret {name!r}: {reference!r} is empty")
    register_secret(text)  # jitr's log formatter now redacts it, should anything try to log it
    return text


class _BinarySecret(SecretNotFoundError):
    """The secret exists and holds bytes that are not text."""


def _secret_string(name: str, secret_id: str, config: AwsConfig) -> str:
    key = (config.region, config.endpoint_url, secret_id)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
    if cached is not None and now - cached[0] < config.secret_cache_ttl_s:
        return cached[1]
    try:
        answer = client("secretsmanager", config).get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as exc:
        failure: JitrError | None = _fetch_error(name, secret_id, exc)
    else:
        failure = None
    if failure is not None:
        raise failure  # outside the handler, so no exception chain is kept
    text: str | None
    if "SecretString" in answer:
        text = str(answer["SecretString"])
    else:
        try:
            text = bytes(answer.get("SecretBinary", b"")).decode()
        except UnicodeDecodeError:
            text = None  # the error would carry the bytes
        if text is None:
            raise _BinarySecret(f"secret {name!r}: {secret_id!r} holds binary data, not text")
    with _lock:
        _cache[key] = (now, text)
    return text


def _fetch_error(name: str, secret_id: str, exc: Exception) -> JitrError:
    if error_code(exc) in _ABSENT:
        return SecretNotFoundError(
            f"secret {name!r}: Secrets Manager has no readable secret {secret_id!r} ({error_code(exc)})"
        )
    return backend_error("Secrets Manager", "GetSecretValue", exc, f"secret {name!r} ({secret_id!r})")


def store(name: str, reference: str, value: Secret, config: AwsConfig) -> bool:
    """Store ``value`` at ``reference``: True when the secret was created, False for a new version.

    With ``#key`` the secret holds a JSON object and only that key changes (the object is read,
    changed and written back; jitr is the only writer it expects while it runs).
    """
    secret_id, json_key = _parse(name, reference)
    text = value.reveal()
    if not text:
        raise SettingsError(f"secret {name!r}: refusing to store an empty value in {secret_id!r}")
    register_secret(text)
    if json_key:
        text = json.dumps({**_json_object(name, secret_id, config), json_key: text})
    sm = client("secretsmanager", config)
    failure: JitrError | None = None
    created = False
    try:
        if _SECRET_ARN.match(secret_id):
            sm.put_secret_value(SecretId=secret_id, SecretString=text)
        else:
            try:
                sm.create_secret(Name=secret_id, SecretString=text, Description=f"jitr {name}")
                created = True
            except ClientError as exc:
                if error_code(exc) != "ResourceExistsException":
                    raise
                sm.put_secret_value(SecretId=secret_id, SecretString=text)
    except (ClientError, BotoCoreError) as exc:
        failure = _store_error(name, secret_id, exc, (value.reveal(), text))
    if failure is not None:
        raise failure  # outside the handler, so no exception chain is kept
    with _lock:
        for key in [k for k in _cache if k[2] == secret_id]:
            del _cache[key]
    return created


def _json_object(name: str, secret_id: str, config: AwsConfig) -> dict[str, object]:
    """The JSON object a ``#key`` reference's secret holds now (empty when there is no such secret)."""
    try:
        current = _secret_string(name, secret_id, replace(config, secret_cache_ttl_s=0))
    except _BinarySecret:
        current = ""  # there, and no JSON: refused below, not replaced
    except SecretNotFoundError:
        return {}
    try:
        document = json.loads(current)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretNotFoundError(f"secret {name!r}: {secret_id!r} is not a JSON object, so it has no keys to set")
    return document


def _store_error(name: str, secret_id: str, exc: Exception, values: tuple[str, ...]) -> JitrError:
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        return SecretNotFoundError(
            f"secret {name!r}: Secrets Manager has no secret {secret_id!r}; an ARN must name an existing secret "
            f"(name it by its name to have it created)"
        )
    if code == "InvalidRequestException":
        return BackendError(
            f"secret {name!r}: Secrets Manager refused to store {secret_id!r} (InvalidRequestException); "
            f"a secret scheduled for deletion must be restored first"
        )
    error = backend_error("Secrets Manager", "CreateSecret/PutSecretValue", exc, f"secret {name!r} ({secret_id!r})")
    if any(value and value in str(error) for value in values):
        return BackendError(f"Secrets Manager refused to store secret {name!r} ({secret_id!r}): {code}")
    return error
