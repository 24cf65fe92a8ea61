"""The [gcp] settings: defaults, the string forms of environment variables, errors naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_core.errors import SettingsError
from jitr_core.model import QueueMessage
from jitr_core.settings import Settings
from jitr_gcp.config import CLOUD_PLATFORM_SCOPE, gcp_config
from jitr_gcp.testing.backend import gcp_backend


def from_env(**gcp: str) -> Settings:
    return Settings.from_env({"JITR_PROVIDER": "gcp", **{f"JITR_GCP_{k.upper()}": v for k, v in gcp.items()}})


def test_defaults_name_every_resource_in_the_project() -> None:
    cfg = gcp_config(from_env(project="ci-runners"))
    assert cfg.queue("jobs").topic == "projects/ci-runners/topics/jitr-jobs"
    assert cfg.queue("jobs").subscription == "projects/ci-runners/subscriptions/jitr-jobs-pull"
    assert cfg.queue("lifecycle").dead_letter_topic == "projects/ci-runners/topics/jitr-lifecycle-dead-letter"
    assert cfg.queue("lifecycle").dead_letter_subscription == (
        "projects/ci-runners/subscriptions/jitr-lifecycle-dead-letter"
    )
    assert (cfg.external_ip, cfg.scopes, cfg.network, cfg.max_deliveries) == (
        False,
        (CLOUD_PLATFORM_SCOPE,),
        "default",
        5,
    )
    assert (cfg.firestore_database, cfg.firestore_collection, cfg.secret_cache_ttl_s) == ("(default)", "jitr", 300)


def test_environment_strings_are_parsed() -> None:
    cfg = gcp_config(
        from_env(
            project="ci-runners",
            zones="us-central1-a, us-central1-f",
            external_ip="yes",
            max_deliveries="7",
            jobs_topic="projects/shared-bus/topics/ci-jobs",
            service_account="runner@ci-runners.iam.gserviceaccount.com",
        )
    )
    assert cfg.zones == ("us-central1-a", "us-central1-f")
    assert cfg.external_ip is True and cfg.max_deliveries == 7
    assert cfg.queue("jobs").topic == "projects/shared-bus/topics/ci-jobs"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "JITR_GCP_PROJECT"),
        ({"project": "X"}, "JITR_GCP_PROJECT"),
        ({"zones": "us-central1"}, "JITR_GCP_ZONES"),
        ({"max_deliveries": "0"}, "JITR_GCP_MAX_DELIVERIES"),
        ({"pull_wait_s": "soon"}, "JITR_GCP_PULL_WAIT_S"),
        ({"external_ip": "maybe"}, "JITR_GCP_EXTERNAL_IP"),
        ({"jobs_topic": "projects/p/subscriptions/s"}, "JITR_GCP_JOBS_TOPIC"),
        ({"lifecycle_subscription": "goog-reserved"}, "JITR_GCP_LIFECYCLE_SUBSCRIPTION"),
        ({"compute_endpoint": "ftp://fake"}, "JITR_GCP_COMPUTE_ENDPOINT"),
        ({"service_account": "not an email"}, "JITR_GCP_SERVICE_ACCOUNT"),
        ({"scopes": "cloud-platform"}, "JITR_GCP_SCOPES"),
        ({"subnetwork": "regions/us-central1/networks/x"}, "JITR_GCP_SUBNETWORK"),
        ({"projekt": "typo"}, "JITR_GCP_PROJEKT"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    values = {"project": "ci-runners", **env} if "project" not in env and env else env
    with pytest.raises(SettingsError, match=variable):
        gcp_config(from_env(**values))


def test_toml_errors_name_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text('provider = "gcp"\n[gcp]\nproject = "ci-runners"\noperation_timeout_s = 1\n')
    with pytest.raises(SettingsError, match=r"gcp\.operation_timeout_s in .*jitr\.toml must be between 5 and 3600"):
        gcp_config(Settings.from_toml(path))


def test_the_first_hook_call_reports_bad_settings() -> None:
    with pytest.raises(SettingsError, match="JITR_GCP_PROJECT is required"):
        gcp_backend(from_env()).enqueue("jobs", QueueMessage("{}"))


@pytest.mark.parametrize(("key", "value"), [("network", "bad network!"), ("subnetwork", "regions/x/y/z")])
def test_a_pools_own_network_is_checked_and_named(key: str, value: str) -> None:
    pools = json.dumps([{"name": "gpu", "labels": ["self-hosted"], "machine_types": ["g2"], "options": {key: value}}])
    settings = Settings.from_env({"JITR_PROVIDER": "gcp", "JITR_GCP_PROJECT": "ci-runners", "JITR_POOLS": pools})
    with pytest.raises(SettingsError, match=rf"JITR_POOLS\[0\]\.options\.{key} must be"):
        gcp_config(settings)
