"""Storing secrets in Secret Manager through the real client against the fake REST API."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, SettingsError
from jitr_core.secret import Secret
from jitr_gcp.testing.backend import PROJECT, gcp_backend, gcp_settings
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager, crc32c

VALUE = "whsec-gcp-store-never-printed-42"


def with_reference(backend: Backend, reference: str) -> Backend:
    return Backend(backend.pm, replace(backend.settings, secrets={"webhook_secret": reference}))


@pytest.mark.parametrize("reference", ["stored-{n}", "projects/jitr-test/secrets/stored-{n}", "{full}/versions/latest"])
def test_an_absent_secret_is_created_and_later_values_are_new_versions(
    secrets_backend: Backend, fake_secret_manager: FakeSecretManager, reference: str
) -> None:
    n = len(fake_secret_manager.secrets)
    full = f"projects/{PROJECT}/secrets/stored-{n}"
    backend = with_reference(secrets_backend, reference.format(n=n, full=full))
    assert backend.store_secret("webhook_secret", Secret(VALUE)) is True
    assert backend.secret("webhook_secret") == VALUE
    assert backend.store_secret("webhook_secret", Secret(VALUE + "-2")) is False
    assert backend.secret("webhook_secret") == VALUE + "-2"  # the process cache was dropped
    assert [v["name"].rsplit("/", 1)[1] for v in fake_secret_manager.secrets[full]] == ["1", "2"]
    assert fake_secret_manager.metadata[full]["labels"] == {"managed-by": "jitr"}
    assert "automatic" in fake_secret_manager.metadata[full]["replication"]


def test_an_existing_secret_gets_a_version(secrets_backend: Backend, fake_secret_manager: FakeSecretManager) -> None:
    name = fake_secret_manager.put(PROJECT, "seeded", "old")
    assert with_reference(secrets_backend, "seeded").store_secret("webhook_secret", Secret(VALUE)) is False
    assert base64.b64decode(fake_secret_manager.secrets[name][-1]["data"]).decode() == VALUE


def test_a_pinned_version_or_an_env_reference_is_refused_without_the_value(
    secrets_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jitr")
    pinned = f"projects/{PROJECT}/secrets/pinned/versions/3"
    with pytest.raises(SettingsError, match="version 3 of projects/jitr-test/secrets/pinned") as caught:
        with_reference(secrets_backend, pinned).store_secret("webhook_secret", Secret(VALUE))
    with pytest.raises(SettingsError, match="env:JITR_WEBHOOK_SECRET"):
        with_reference(secrets_backend, "env:JITR_WEBHOOK_SECRET").store_secret("webhook_secret", Secret(VALUE))
    assert VALUE not in repr(caught.value) and VALUE not in caplog.text


def test_an_unreachable_secret_manager_is_a_backend_error() -> None:
    backend = gcp_backend(gcp_settings({"secretmanager_endpoint": "http://127.0.0.1:9"}))
    with pytest.raises(BackendError, match="could not be reached") as caught:
        backend.store_secret("webhook_secret", Secret(VALUE), reference="somewhere")
    assert VALUE not in repr(caught.value) and caught.value.__cause__ is None


def test_the_fake_creates_gets_and_checks_payload_checksums(fake_secret_manager: FakeSecretManager) -> None:
    client = secretmanager.SecretManagerServiceClient(
        transport="rest", credentials=AnonymousCredentials(), client_options={"api_endpoint": fake_secret_manager.url}
    )
    with pytest.raises(exceptions.BadRequest, match="replication is required"):
        client.create_secret(request={"parent": f"projects/{PROJECT}", "secret_id": "bare", "secret": {}})
    created = client.create_secret(
        request={"parent": f"projects/{PROJECT}", "secret_id": "sum", "secret": {"replication": {"automatic": {}}}}
    )
    assert client.get_secret(name=created.name).name == created.name
    with pytest.raises(exceptions.Conflict):
        client.create_secret(
            request={"parent": f"projects/{PROJECT}", "secret_id": "sum", "secret": {"replication": {"automatic": {}}}}
        )
    data = b"checked payload"
    payload = secretmanager.SecretPayload(data=data, data_crc32c=crc32c(data))
    version = client.add_secret_version(parent=created.name, payload=payload)
    assert version.client_specified_payload_checksum
    with pytest.raises(exceptions.BadRequest, match="Checksum mismatch"):
        client.add_secret_version(
            parent=created.name, payload=secretmanager.SecretPayload(data=data, data_crc32c=crc32c(data) ^ 1)
        )
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"projects/{PROJECT}/secrets/absent")
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
