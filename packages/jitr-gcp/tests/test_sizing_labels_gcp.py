"""Sizing from labels on GCP: size tables and type patterns must name GCE machine types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings
from jitr_gcp.config import gcp_config

SIZED = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["e2-standard-2"]}


def settings(pool: dict[str, Any]) -> Settings:
    pools = json.dumps([{**SIZED, **pool}])
    return Settings.from_env({"JITR_PROVIDER": "gcp", "JITR_GCP_PROJECT": "ci-runners", "JITR_POOLS": pools})


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (
            {"machine_sizes": [{"machine_type": "c6i.xlarge", "cpu": 4, "ram": 8}]},
            r"JITR_POOLS\[0\]\.machine_sizes\[0\] must be a GCE machine type",
        ),
        (
            {"machine_type_labels": ["n2-standard-*", "c6i.*"]},
            r"JITR_POOLS\[0\]\.machine_type_labels\[1\] can match no",
        ),
        ({"machine_type_labels": ["2xlarge"]}, r"machine_type_labels\[0\] can match no GCE machine type"),
    ],
)
def test_sizing_types_that_are_not_gce_machine_types_are_refused(pool: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        gcp_config(settings(pool))


def test_gce_sizing_types_are_accepted() -> None:
    sizes = [
        {"machine_type": "n2-standard-8", "cpu": 8, "ram": 32},
        {"machine_type": "e2-custom-4-8192", "cpu": 4, "ram": 8},
    ]
    config = gcp_config(settings({"machine_type_labels": ["n2-standard-*", "c3-highcpu-?"], "machine_sizes": sizes}))
    assert config.project == "ci-runners"
