"""A warm VM proves itself with its launch-time identity document long after its launch: the
accepted age covers the longest a warm VM may wait (Settings.warm_deadline_s)."""

from __future__ import annotations

from typing import Any

import pytest
from jitr_aws.config import IDENTITY_MAX_AGE_S, parse
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

POOL = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m7i.large"], "handoff": "broker"}


def settings(aws: dict[str, Any] | None = None, **pool: Any) -> Settings:
    data = {
        "provider": "embedded",
        "vm_provider": "aws",
        "broker_url": "https://jitr.example/broker",
        "boot_timeout_s": 600,
        "warm_hold_s": 20,
        "aws": {"region": "eu-west-1", **(aws or {})},
        "pools": [{**POOL, **pool}],
    }
    return Settings.from_mapping(data)


def test_without_warm_pools_the_default_age_is_the_hour() -> None:
    assert parse(settings()).identity_max_age_s == IDENTITY_MAX_AGE_S


def test_a_warm_pool_raises_the_default_to_its_deadline() -> None:
    s = settings(warm=1, warm_max_idle_s=4 * 3600)
    assert parse(s).identity_max_age_s == 600 + 4 * 3600 + 20 == s.warm_deadline_s(s.pool("linux"))


def test_an_explicit_age_shorter_than_a_warm_vm_may_wait_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"aws\.identity_max_age_s .*\(3600\) is shorter than a warm VM"):
        parse(settings({"identity_max_age_s": 3600}, warm=1, warm_max_idle_s=7200))
    assert parse(settings({"identity_max_age_s": 9000}, warm=1, warm_max_idle_s=7200)).identity_max_age_s == 9000
