"""Settings from the environment and from TOML: validation errors name the variable or key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

POOL = {"name": "linux", "labels": ["self-hosted", "Linux", "X64"], "machine_types": ["m7i.large", "m6i.large"]}


def env(**extra: str) -> dict[str, str]:
    return {"JITR_POOLS": json.dumps([POOL]), **extra}


def test_environment_settings_are_parsed() -> None:
    s = Settings.from_env(
        env(
            JITR_MAX_RUNNERS="12",
            JITR_VM_PROVIDER="aws",
            JITR_AWS_REGION="eu-west-1",
            JITR_ALLOWED_OWNERS="Octo-Org, other",
            JITR_GITHUB_APP_ID="123",
        )
    )
    assert s.max_runners == 12
    assert s.provider("vm") == "aws" and s.provider("store") == "embedded"
    assert s.section("aws") == {"region": "eu-west-1"}
    assert s.allowed_owners == {"octo-org", "other"}
    assert s.github_app_id == "123"
    pool = s.pool("linux")
    assert pool.labels == {"self-hosted", "linux", "x64"}
    assert pool.machine_types == ("m7i.large", "m6i.large")


def test_secret_values_never_enter_settings() -> None:
    s = Settings.from_env(env(JITR_WEBHOOK_SECRET="hunter2-hunter2", JITR_GITHUB_APP_PRIVATE_KEY="-----BEGIN"))
    assert "hunter2" not in repr(s) and "BEGIN" not in repr(s)
    assert s.secrets["webhook_secret"] == "env:JITR_WEBHOOK_SECRET"


def test_toml_settings_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text(
        'provider = "embedded"\nmax_runners = 4\n[github]\napp_id = "42"\napi_url = "http://127.0.0.1:9/api/v3/"\n'
        '[embedded]\nstate_dir = "/tmp/x"\n[[pools]]\nname = "gpu"\nlabels = ["self-hosted", "gpu"]\n'
        'machine_types = ["g5.xlarge"]\nspot = false\nplacements = ["subnet-1", "subnet-2"]\n'
    )
    s = Settings.from_toml(path)
    assert s.github_api_url == "http://127.0.0.1:9/api/v3"
    assert s.pool("gpu").spot is False and s.pool("gpu").placements == ("subnet-1", "subnet-2")
    assert s.section("embedded") == {"state_dir": "/tmp/x"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JITR_MAX_RUNNERS": "many"}, "JITR_MAX_RUNNERS must be a whole number"),
        ({"JITR_MAX_RUNNERS": "0"}, "JITR_MAX_RUNNERS must be at least 1"),
        ({"JITR_POOLS": "{not json"}, "JITR_POOLS must be a JSON list"),
        ({"JITR_POOLS": '{"name": "x"}'}, "JITR_POOLS must be a list"),
        ({"JITR_POOLS": json.dumps([{**POOL, "labels": ["linux"]}])}, r"JITR_POOLS\[0\].labels must include"),
        ({"JITR_POOLS": json.dumps([{**POOL, "machine_types": []}])}, r"JITR_POOLS\[0\].machine_types must list"),
        ({"JITR_POOLS": json.dumps([{**POOL, "name": "Bad Name"}])}, r"JITR_POOLS\[0\].name must match"),
        ({"JITR_POOLS": json.dumps([{**POOL, "spot": "maybe"}])}, r"JITR_POOLS\[0\].spot must be true or false"),
        ({"JITR_POOLS": json.dumps([{**POOL, "colour": "red"}])}, r"JITR_POOLS\[0\].colour is not a pool setting"),
        ({"JITR_POOLS": json.dumps([{**POOL, "image": "ami-1; rm -rf /"}])}, r"JITR_POOLS\[0\].image has"),
        ({"JITR_POOLS": json.dumps([POOL, POOL])}, "names pool 'linux' twice"),
        ({"JITR_POOLS": json.dumps([{**POOL, "arch": "sparc"}])}, r"JITR_POOLS\[0\].arch must match"),
        ({"JITR_VM_PROVIDER": "A WS"}, "JITR_VM_PROVIDER must match"),
        ({"JITR_ALLOWED_REPOS": "not a repo"}, "JITR_ALLOWED_REPOS has an invalid entry"),
        ({"JITR_LOG_LEVEL": "LOUD"}, "JITR_LOG_LEVEL must match"),
        ({"JITR_GITHUB_API_URL": "ftp://x"}, "JITR_GITHUB_API_URL must be an http"),
    ],
)
def test_invalid_environment_names_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_invalid_toml_names_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[pools]]\nname = "p"\nlabels = ["self-hosted"]\nmachine_types = ["m"]\nmax_runners = -1\n')
    with pytest.raises(SettingsError, match=r"pools\[0\].max_runners in .*bad.toml must be at least 0"):
        Settings.from_toml(path)


def test_unreadable_toml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.from_toml(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("provider = ")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.from_toml(tmp_path / "broken.toml")


def test_unknown_pool_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="unknown pool 'gpu'"):
        Settings.from_env(env()).pool("gpu")


def test_a_misspelt_top_level_setting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("max_runnerz = 3\n")
    with pytest.raises(SettingsError, match=r"max_runnerz in .*typo.toml is not a setting"):
        Settings.from_toml(path)


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("JITR_MAX_RUNNER", "JITR_MAX_RUNNERS"),
        ("JITR_BOOT_TIMEOUT", "JITR_BOOT_TIMEOUT_S"),
        ("JITR_GITHUB_APPID", "JITR_GITHUB_APP_ID"),
        ("JITR_PROVIDERS", "JITR_PROVIDER"),
    ],
)
def test_a_misspelt_variable_is_an_error_naming_it(variable: str, suggestion: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable} is not a jitr setting; did you mean {suggestion}\?"):
        Settings.from_env(env(**{variable: "3"}))


def test_a_misspelt_github_key_in_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[github]\napp_idd = "1"\n')
    with pytest.raises(SettingsError, match=r"github.app_idd in .*typo.toml is not a setting"):
        Settings.from_toml(path)


def test_plugin_sections_and_tooling_variables_are_accepted() -> None:
    s = Settings.from_env(env(JITR_AWS_REGION="eu-west-1", JITR_REQUIRE_TOOLS="1", JITR_DISABLE_PLUGINS="*"))
    assert s.section("aws") == {"region": "eu-west-1"}


def test_setting_name_is_what_the_user_typed(tmp_path: Path) -> None:
    from_env = Settings.from_env(env(JITR_AWS_REGION="eu-west-1"))
    assert from_env.setting_name("aws", "region") == "JITR_AWS_REGION"
    assert from_env.setting_name("pools", 0, "options", "key_name") == "JITR_POOLS[0].options.key_name"
    path = tmp_path / "jitr.toml"
    path.write_text('[gcp]\nproject = "p"\n')
    from_file = Settings.from_toml(path)
    assert from_file.setting_name("gcp", "project") == f"gcp.project in {path}"
    # a JITR_CONFIG file overlaid with variables: each key is named where it was set
    mixed = Settings.from_env(env(JITR_CONFIG=str(path), JITR_GCP_ZONE="europe-west4-b"))
    assert mixed.setting_name("gcp", "zone") == "JITR_GCP_ZONE"
    assert mixed.setting_name("gcp", "project") == f"gcp.project in {path}"


def test_a_provider_named_with_a_hyphen_takes_its_settings_from_the_environment() -> None:
    """A variable's name takes no "-": provider my-vms's settings are JITR_MY_VMS_*, as Lambda and
    Cloud Run, configured by variables alone, must set them."""
    env = {
        "JITR_VM_PROVIDER": "my-vms",
        "JITR_MY_VMS_ENDPOINT": "https://vms.example.com",
        "JITR_MY_VMS_ZONE": "z1",
        "JITR_AWS_REGION": "eu-west-1",
    }
    settings = Settings.from_env(env)
    assert settings.section("my-vms") == {"endpoint": "https://vms.example.com", "zone": "z1"}
    assert settings.section("aws") == {"region": "eu-west-1"} and settings.section("my") == {}
    assert settings.setting_name("my-vms", "zone") == "JITR_MY_VMS_ZONE"
