"""Storing secrets in Secrets Manager (moto over HTTP): created by name, new versions, JSON keys, clear errors."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace

import pytest
from awsworld import World
from jitr_core.backend import Backend
from jitr_core.errors import SecretNotFoundError, SettingsError
from jitr_core.secret import Secret
from jitr_core.settings import Settings

VALUE = "st0red-" + uuid.uuid4().hex


def with_reference(backend: Backend, reference: str) -> Backend:
    return Backend(
        backend.pm, replace(backend.settings, secrets={**backend.settings.secrets, "webhook_secret": reference})
    )


def unique_name() -> str:
    return f"jitr/store-{uuid.uuid4().hex[:10]}"


def test_a_named_secret_is_created_then_given_new_versions(backend: Backend, world: World) -> None:
    name = unique_name()
    target = with_reference(backend, name)
    assert target.store_secret("webhook_secret", Secret(VALUE)) is True
    assert target.secret("webhook_secret") == VALUE
    assert target.store_secret("webhook_secret", Secret(VALUE + "-2")) is False
    assert target.secret("webhook_secret") == VALUE + "-2"  # the process cache was dropped
    sm = world.client("secretsmanager")
    assert sm.describe_secret(SecretId=name)["Description"] == "jitr webhook_secret"
    assert len(sm.list_secret_version_ids(SecretId=name)["Versions"]) == 2


def test_an_arn_gets_a_new_version_but_is_never_created(backend: Backend, world: World) -> None:
    arn = world.client("secretsmanager").create_secret(Name=unique_name(), SecretString="old")["ARN"]
    assert with_reference(backend, arn).store_secret("webhook_secret", Secret(VALUE)) is False
    assert with_reference(backend, arn).secret("webhook_secret") == VALUE
    missing = arn.rsplit(":", 1)[0] + ":jitr/never-created-AbCdEf"
    with pytest.raises(SecretNotFoundError, match="an ARN must name an existing secret"):
        with_reference(backend, missing).store_secret("webhook_secret", Secret(VALUE))


def test_a_key_of_a_json_secret_is_set_and_its_other_keys_kept(backend: Backend, world: World) -> None:
    name = unique_name()
    assert with_reference(backend, f"{name}#webhook").store_secret("webhook_secret", Secret(VALUE)) is True
    world.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps({"webhook": "x", "o": "1"}))
    assert with_reference(backend, f"{name}#webhook").store_secret("webhook_secret", Secret(VALUE)) is False
    stored = json.loads(world.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    assert stored == {"webhook": VALUE, "o": "1"}


def test_unusable_references_are_clear_errors_without_the_value(
    backend: Backend, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jitr")
    plain = unique_name()
    world.client("secretsmanager").create_secret(Name=plain, SecretString="not json")
    with pytest.raises(SecretNotFoundError, match="is not a JSON object") as not_json:
        with_reference(backend, f"{plain}#key").store_secret("webhook_secret", Secret(VALUE))
    binary = unique_name()
    world.client("secretsmanager").create_secret(Name=binary, SecretBinary=b"\x00\xff key material")
    with pytest.raises(SecretNotFoundError, match="is not a JSON object"):  # not taken for absent and replaced
        with_reference(backend, f"{binary}#key").store_secret("webhook_secret", Secret(VALUE))
    assert world.client("secretsmanager").get_secret_value(SecretId=binary)["SecretBinary"] == b"\x00\xff key material"
    with pytest.raises(SettingsError, match="not a Secrets Manager secret name") as bad:
        with_reference(backend, "no spaces allowed").store_secret("webhook_secret", Secret(VALUE))
    with pytest.raises(SettingsError, match="env:JITR_WEBHOOK_SECRET"):
        with_reference(backend, "env:JITR_WEBHOOK_SECRET").store_secret("webhook_secret", Secret(VALUE))
    for error in (not_json.value, bad.value):
        assert VALUE not in repr(error) and error.__cause__ is None
    assert VALUE not in caplog.text


def test_the_hook_stays_silent_for_another_provider(backend: Backend) -> None:
    other = Settings.from_mapping({"provider": "gcp"})
    answer = backend.pm.hook.jitr_store_secret(
        name="webhook_secret", reference="x", value=Secret(VALUE), settings=other
    )
    assert answer is None
