"""Storing secrets: ``file:`` references written by core (0600, atomic), ``env:`` refused, providers asked otherwise."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.embedded.secrets import secrets_dir
from jitr_core.errors import BackendError, NoProviderError, SettingsError
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Settings

VALUE = "whsec-core-store-never-shown-0123456789"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


def with_reference(backend: Backend, name: str, reference: str) -> Backend:
    return Backend(backend.pm, replace(backend.settings, secrets={**backend.settings.secrets, name: reference}))


def test_a_file_reference_is_written_owner_only_and_reads_back(embedded_backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "webhook.secret"
    backend = with_reference(embedded_backend, "webhook_secret", f"file:{path}")
    assert backend.store_secret("webhook_secret", Secret(VALUE)) is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert backend.secret("webhook_secret") == VALUE
    assert backend.store_secret("webhook_secret", Secret(VALUE + "-2")) is False
    assert backend.secret("webhook_secret") == VALUE + "-2"
    assert [p.name for p in path.parent.iterdir()] == ["webhook.secret"]  # no temporary file left


def test_a_pem_key_keeps_its_lines(embedded_backend: Backend, tmp_path: Path) -> None:
    backend = with_reference(embedded_backend, "github_app_private_key", f"file:{tmp_path / 'key.pem'}")
    backend.store_secret("github_app_private_key", Secret(PEM))
    assert (tmp_path / "key.pem").read_text() == PEM
    assert backend.secret("github_app_private_key") == PEM.rstrip("\n")


def test_a_file_is_replaced_with_mode_0600_whatever_it_had(embedded_backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "wide.secret"
    path.write_text("old\n")
    path.chmod(0o644)
    with_reference(embedded_backend, "webhook_secret", f"file:{path}").store_secret("webhook_secret", Secret(VALUE))
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == VALUE + "\n"


def test_an_environment_reference_cannot_be_written(
    embedded_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = with_reference(embedded_backend, "webhook_secret", "env:MY_HOOK_SECRET")
    with pytest.raises(SettingsError, match="env:MY_HOOK_SECRET") as caught:
        backend.store_secret("webhook_secret", Secret(VALUE))
    assert "JITR_SECRETS_WEBHOOK_SECRET" in str(caught.value)
    assert VALUE not in repr(caught.value) + caplog.text
    assert "MY_HOOK_SECRET" not in os.environ


def test_an_unwritable_file_is_an_error_without_the_value(embedded_backend: Backend, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    backend = with_reference(embedded_backend, "webhook_secret", f"file:{blocker}/below/secret")
    with pytest.raises(BackendError, match="cannot be written") as caught:
        backend.store_secret("webhook_secret", Secret(VALUE))
    assert VALUE not in repr(caught.value) and caught.value.__cause__ is None


def test_empty_values_and_missing_references_are_refused(embedded_backend: Backend, tmp_path: Path) -> None:
    backend = with_reference(embedded_backend, "webhook_secret", f"file:{tmp_path / 's'}")
    with pytest.raises(SettingsError, match="empty"):
        backend.store_secret("webhook_secret", Secret(""))
    with pytest.raises(SettingsError, match="no reference"):
        backend.store_secret("webhook_secret", Secret(VALUE), reference="")


def test_other_references_go_to_the_secrets_provider(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"secrets_provider": "vault", "embedded": {"state_dir": str(tmp_path)}})
    backend = Backend(create_plugin_manager(load_entry_points=False), settings)
    with pytest.raises(NoProviderError, match="jitr_store_secret"):
        backend.store_secret("webhook_secret", Secret(VALUE), reference="kv/jitr/webhook")


def test_the_embedded_hook_answers_only_for_its_provider(embedded_backend: Backend, tmp_path: Path) -> None:
    hook, settings = embedded_backend.pm.hook.jitr_store_secret, embedded_backend.settings
    path = tmp_path / "direct.secret"
    assert hook(name="webhook_secret", reference=f"file:{path}", value=Secret(VALUE), settings=settings)
    assert path.read_text() == VALUE + "\n"
    other = replace(settings, providers={**settings.providers, "secrets": "aws"})
    assert hook(name="webhook_secret", reference="arn:x", value=Secret(VALUE), settings=other) is None


def test_the_embedded_secrets_live_in_the_state_directory(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"embedded": {"state_dir": str(tmp_path / "state")}})
    assert secrets_dir(settings) == tmp_path / "state" / "secrets"
    assert secrets_dir(Settings.from_mapping({}), {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "jitr" / "secrets"
