"""Secret Manager through the real client against the fake REST API: references, cache, errors."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, SecretNotFoundError
from jitr_core.logs import JsonFormatter
from jitr_gcp.testing.backend import PROJECT, gcp_backend, gcp_settings
from jitr_gcp.testing.fakehttp import ApiError
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager

VALUE = "whsec-7f3b9c1d-never-printed"


def with_reference(backend: Backend, reference: str) -> Backend:
    return Backend(backend.pm, replace(backend.settings, secrets={"webhook_secret": reference}))


@pytest.mark.parametrize(
    "reference",
    [
        "webhook-{n}",
        "projects/jitr-test/secrets/webhook-{n}",
        "projects/jitr-test/secrets/webhook-{n}/versions/latest",
        "projects/jitr-test/secrets/webhook-{n}/versions/1",
    ],
)
def test_every_reference_form_reads_the_value(
    secrets_backend: Backend, fake_secret_manager: FakeSecretManager, reference: str
) -> None:
    n = len(fake_secret_manager.secrets)
    fake_secret_manager.put(PROJECT, f"webhook-{n}", VALUE)
    assert with_reference(secrets_backend, reference.format(n=n)).secret("webhook_secret") == VALUE


def test_values_are_cached_for_the_ttl(fake_secret_manager: FakeSecretManager) -> None:
    fake_secret_manager.put(PROJECT, "cached", VALUE)
    cached = gcp_backend(
        gcp_settings({"secretmanager_endpoint": fake_secret_manager.url}, secrets={"webhook_secret": "cached"})
    )
    assert [cached.secret("webhook_secret") for _ in range(3)] == [VALUE] * 3
    assert fake_secret_manager.accesses == 1
    uncached = gcp_backend(
        gcp_settings(
            {"secretmanager_endpoint": fake_secret_manager.url, "secret_cache_ttl_s": 0},
            secrets={"webhook_secret": "cached"},
        )
    )
    uncached.secret("webhook_secret")
    uncached.secret("webhook_secret")
    assert fake_secret_manager.accesses == 3


def test_disabled_empty_and_binary_secrets_are_not_found(
    secrets_backend: Backend, fake_secret_manager: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = fake_secret_manager.put(PROJECT, "disabled", VALUE)
    fake_secret_manager.secrets[name][-1]["state"] = "DISABLED"
    with pytest.raises(SecretNotFoundError, match=r"webhook_secret.*DISABLED state") as disabled:
        with_reference(secrets_backend, name).secret("webhook_secret")
    fake_secret_manager.put(PROJECT, "empty", "")
    with pytest.raises(SecretNotFoundError, match=r"webhook_secret.*is empty") as empty:
        with_reference(secrets_backend, "empty").secret("webhook_secret")
    binary = fake_secret_manager.put(PROJECT, "binary", "placeholder")
    fake_secret_manager.secrets[binary][-1]["data"] = base64.b64encode(b"0\x82\x04\xa4\xff-" + VALUE.encode()).decode()
    with pytest.raises(SecretNotFoundError, match=r"webhook_secret.*is not UTF-8 text") as undecodable:
        with_reference(secrets_backend, "binary").secret("webhook_secret")
    for error in (disabled.value, empty.value, undecodable.value):
        assert VALUE not in repr(error) and error.__cause__ is None
    assert VALUE not in caplog.text


def test_a_fetched_value_is_redacted_from_jitr_logs(
    secrets_backend: Backend, fake_secret_manager: FakeSecretManager
) -> None:
    fake_secret_manager.put(PROJECT, "redacted", VALUE)
    with_reference(secrets_backend, "redacted").secret("webhook_secret")
    line = JsonFormatter().format(logging.LogRecord("jitr.test", logging.INFO, "", 0, "oops %s", (VALUE,), None))
    assert VALUE not in line and "[REDACTED]" in line


def test_env_references_are_read_by_core_whatever_the_provider(
    secrets_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITR_TEST_GCP_SECRET", "from-the-environment")
    backend = with_reference(secrets_backend, "env:JITR_TEST_GCP_SECRET")
    assert backend.secret("webhook_secret") == "from-the-environment"


def test_hooks_stay_silent_for_another_provider(secrets_backend: Backend) -> None:
    settings = secrets_backend.settings
    other = replace(settings, providers={**settings.providers, "secrets": "embedded"})
    assert secrets_backend.pm.hook.jitr_fetch_secret(name="webhook_secret", reference="x", settings=other) is None


class _Unavailable(FakeSecretManager):
    def _access(self, secret: str, version: str) -> dict[str, Any]:
        raise ApiError(503, "The service is currently unavailable.", "backendError")


def test_a_secret_manager_that_keeps_failing_is_a_backend_error() -> None:
    """Retried for ``operation_timeout_s``, then a BackendError saying so (the client's own retry
    gives up after a minute with a RetryError, which is none of jitr's errors)."""
    fake = _Unavailable()
    fake.start()
    try:
        backend = gcp_backend(
            gcp_settings(
                {"secretmanager_endpoint": fake.url, "operation_timeout_s": 5, "secret_cache_ttl_s": 0},
                secrets={"webhook_secret": "webhook"},
            )
        )
        with pytest.raises(BackendError, match="kept failing"):
            backend.secret("webhook_secret")
    finally:
        fake.stop()
