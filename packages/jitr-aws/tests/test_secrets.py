"""Secrets Manager references, JSON keys, the per-process cache, and values kept out of errors and logs."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from typing import Any

import pytest
from awsworld import World
from botocore.awsrequest import AWSResponse
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, SecretNotFoundError
from jitr_core.logs import redact
from jitr_core.plugins import JitrPluginManager

VALUE = "v4lue-" + uuid.uuid4().hex


def _secret(world: World, **content: Any) -> str:
    name = f"jitr/test-{uuid.uuid4().hex[:10]}"
    world.client("secretsmanager").create_secret(Name=name, **content)
    return name


def _fetch(backend: Backend, reference: str) -> str:
    with_ref = replace(backend.settings, secrets={**backend.settings.secrets, "github_app_private_key": reference})
    return Backend(backend.pm, with_ref).secret("github_app_private_key")


def test_a_key_of_a_json_secret(backend: Backend, world: World) -> None:
    name = _secret(world, SecretString=json.dumps({"key": VALUE, "other": "x"}))
    assert _fetch(backend, f"{name}#key") == VALUE


def test_a_fetched_value_is_redacted_from_jitr_logs(backend: Backend, world: World) -> None:
    value = "redact-me-" + uuid.uuid4().hex
    assert _fetch(backend, _secret(world, SecretString=value)) == value
    assert redact(f"token={value}") == "token=[REDACTED]"


def test_a_secret_by_arn(backend: Backend, world: World) -> None:
    arn = world.client("secretsmanager").create_secret(Name=f"jitr/arn-{uuid.uuid4().hex[:8]}", SecretString=VALUE)
    assert _fetch(backend, arn["ARN"]) == VALUE


def test_a_binary_secret_holding_text(backend: Backend, world: World) -> None:
    assert _fetch(backend, _secret(world, SecretBinary=VALUE.encode())) == VALUE


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ({"SecretString": json.dumps({"key": VALUE})}, "#missing", "has no key 'missing'"),
        ({"SecretString": VALUE}, "#key", "is not a JSON object"),
        ({"SecretString": json.dumps({"key": ""})}, "#key", "is empty"),
        ({"SecretString": json.dumps({"key": 42})}, "#key", "is not a string"),
        ({"SecretBinary": b"\xff\xfe" + VALUE.encode()}, "", "holds binary data"),
    ],
)
def test_unusable_secrets_are_clear_errors_without_the_value(
    backend: Backend,
    world: World,
    caplog: pytest.LogCaptureFixture,
    content: dict[str, Any],
    suffix: str,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jitr")
    name = _secret(world, **content)
    with pytest.raises(SecretNotFoundError, match=expected) as caught:
        _fetch(backend, name + suffix)
    message = str(caught.value)
    assert "github_app_private_key" in message and name in message
    assert VALUE not in message and VALUE not in caplog.text
    assert VALUE not in repr(caught.value.__cause__) + repr(caught.value.__context__)


def test_values_are_cached_for_the_configured_time(world: World, plugin_manager: JitrPluginManager) -> None:
    name = _secret(world, SecretString="first")
    cached = Backend(plugin_manager, world.settings(secret_cache_ttl_s=3600))
    assert _fetch(cached, name) == "first"
    world.client("secretsmanager").put_secret_value(SecretId=name, SecretString="second")
    assert _fetch(cached, name) == "first"
    uncached = Backend(plugin_manager, world.settings(secret_cache_ttl_s="0"))
    assert _fetch(uncached, name) == "second"


def test_env_references_are_read_by_core_whatever_the_provider(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITR_TEST_AWS_SECRET", "from-the-environment")
    assert _fetch(backend, "env:JITR_TEST_AWS_SECRET") == "from-the-environment"


def test_access_denied_is_a_backend_error(backend: Backend, world: World) -> None:
    name = _secret(world, SecretString=VALUE)
    events = client("secretsmanager", aws_config(backend.settings)).meta.events
    http = AWSResponse("https://secretsmanager.eu-west-1.amazonaws.com/", 400, {}, None)
    denied = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}, "ResponseMetadata": {}}
    events.register_first("before-call.secrets-manager.GetSecretValue", lambda **_: (http, denied), unique_id="deny")
    try:
        with pytest.raises(BackendError, match="AccessDeniedException") as caught:
            _fetch(Backend(backend.pm, world.settings(secret_cache_ttl_s=0)), name)
    finally:
        events.unregister("before-call.secrets-manager.GetSecretValue", unique_id="deny")
    assert not isinstance(caught.value, SecretNotFoundError) and name in str(caught.value)
