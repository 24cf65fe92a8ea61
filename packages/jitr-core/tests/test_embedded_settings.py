"""The ``[embedded]`` settings and the env/file secrets: clear errors, no value ever echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.embedded import open_embedded
from jitr_core.embedded.secrets import fetch_secret
from jitr_core.errors import NoProviderError, SecretNotFoundError, SettingsError
from jitr_core.model import QueueMessage
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings


def test_environment_variables_configure_the_backend(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "JITR_PROVIDER": "embedded",
            "JITR_EMBEDDED_STATE_DIR": str(tmp_path / "a" / "b"),
            "JITR_EMBEDDED_MAX_VMS": "2",
            "JITR_EMBEDDED_MAX_RECEIVE_COUNT": " 7 ",
        }
    )
    config = open_embedded(settings).config
    assert (config.max_vms, config.max_receive_count, config.terminate_grace_s) == (2, 7, 10)
    assert (tmp_path / "a" / "b" / "jitr.sqlite3").is_file()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_the_default_state_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert open_embedded(Settings.from_mapping({})).config.state_dir == tmp_path / "xdg" / "jitr"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert open_embedded(Settings.from_mapping({})).config.state_dir == tmp_path / "home" / ".local" / "state" / "jitr"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"max_vm": 3}, r"\[embedded\] max_vm \(JITR_EMBEDDED_MAX_VM\) is not an embedded setting"),
        ({"max_vms": "many"}, r"JITR_EMBEDDED_MAX_VMS\) must be a whole number, found 'many'"),
        ({"max_receive_count": 0}, r"max_receive_count \(JITR_EMBEDDED_MAX_RECEIVE_COUNT\) must be at least 1"),
        ({"terminate_grace_s": True}, r"must be a whole number, found True"),
        ({"runner_command": " "}, r"runner_command .* must be a shell command"),
        ({"state_dir": ""}, r"state_dir .* must be a directory path"),
    ],
)
def test_bad_values_are_refused_by_name(section: dict[str, object], message: str, tmp_path: Path) -> None:
    settings = Settings.from_mapping({"embedded": {"state_dir": str(tmp_path), **section}})
    with pytest.raises(SettingsError, match=message):
        open_embedded(settings)


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="must be a directory, found a file"):
        open_embedded(Settings.from_mapping({"embedded": {"state_dir": str(tmp_path / "file")}}))


def test_other_providers_are_left_alone(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"provider": "aws", "embedded": {"state_dir": str(tmp_path / "unused")}})
    backend = Backend(create_plugin_manager(load_entry_points=False, environ={}), settings)
    with pytest.raises(NoProviderError):
        backend.enqueue("jobs", QueueMessage("x"))
    assert not (tmp_path / "unused").exists()


def test_file_secrets_lose_exactly_one_trailing_newline(tmp_path: Path) -> None:
    for text, value in [("v\n", "v"), ("v\n\n", "v\n"), ("v\r\n", "v"), ("-----KEY-----\nabc\n", "-----KEY-----\nabc")]:
        (tmp_path / "s").write_text(text, newline="")
        assert fetch_secret("webhook_secret", f"file:{tmp_path / 's'}") == value


def test_missing_secrets_name_where_they_were_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITR_TEST_EMPTY", "")
    with pytest.raises(SecretNotFoundError, match="'webhook_secret': environment variable JITR_TEST_EMPTY"):
        fetch_secret("webhook_secret", "env:JITR_TEST_EMPTY")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretNotFoundError, match=f"file {tmp_path / 'empty'} is empty"):
        fetch_secret("webhook_secret", f"file:{tmp_path / 'empty'}")
    with pytest.raises(SecretNotFoundError, match="cannot be read"):
        fetch_secret("webhook_secret", f"file:{tmp_path}")


def test_an_unknown_reference_is_a_settings_error_that_does_not_echo_it() -> None:
    pasted = "ghs_s3cr3tvalue:abc"
    with pytest.raises(SettingsError) as error:
        fetch_secret("webhook_secret", pasted)
    assert "webhook_secret" in str(error.value) and "s3cr3t" not in str(error.value)
    with pytest.raises(SettingsError):
        fetch_secret("webhook_secret", "")
