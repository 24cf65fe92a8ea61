"""A pool's warm VMs: ``warm``, ``warm_windows``, ``warm_max_idle_s`` and the global ``warm_hold_s``.

Malformed and hostile values fail at start with the setting's name; windows pick the count by
UTC weekday and hour.
"""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

POOL: dict[str, Any] = {
    "name": "linux",
    "labels": ["self-hosted", "linux"],
    "machine_types": ["m7i.large"],
    "handoff": "broker",
    "max_runners": 5,
}
WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri"], "start_hour": 8, "end_hour": 18, "count": 3}


def settings(**pool: Any) -> Settings:
    return Settings.from_mapping({"broker_url": "https://jitr.example/broker", "pools": [{**POOL, **pool}]})


def at(year: int, month: int, day: int, hour: int) -> float:
    return float(calendar.timegm((year, month, day, hour, 30, 0)))


def test_no_warm_vms_by_default() -> None:
    pool = settings().pool("linux")
    assert pool.warm == 0 and pool.warm_windows == () and not pool.keeps_warm
    assert pool.warm_max_idle_s == 3600 and settings().warm_hold_s == 20


def test_windows_choose_the_count_by_utc_weekday_and_hour() -> None:
    pool = settings(warm=1, warm_windows=[WINDOW, {**WINDOW, "days": ["sat"], "count": 0}]).pool("linux")
    assert pool.keeps_warm
    assert pool.warm_wanted(at(2026, 1, 5, 9)) == 3  # a Monday, 09:30 UTC
    assert pool.warm_wanted(at(2026, 1, 5, 17)) == 3
    assert pool.warm_wanted(at(2026, 1, 5, 18)) == 1  # the end hour is outside the window
    assert pool.warm_wanted(at(2026, 1, 5, 7)) == 1
    assert pool.warm_wanted(at(2026, 1, 10, 9)) == 0  # a Saturday: its own window, count 0
    assert pool.warm_wanted(at(2026, 1, 11, 9)) == 1  # a Sunday: no window


def test_the_environment_form_takes_the_same_keys() -> None:
    env = {
        "JITR_BROKER_URL": "https://jitr.example/broker",
        "JITR_WARM_HOLD_S": "10",
        "JITR_POOLS": json.dumps([{**POOL, "warm": 2, "warm_windows": [WINDOW], "warm_max_idle_s": 600}]),
    }
    s = Settings.from_env(env)
    assert s.warm_hold_s == 10 and s.pool("linux").warm == 2 and s.pool("linux").warm_max_idle_s == 600
    assert s.warm_deadline_s(s.pool("linux")) == s.boot_timeout_s + 600 + 10


def test_warm_vms_need_the_broker_handoff() -> None:
    with pytest.raises(SettingsError, match=r"pools\[0\]\.warm .*leave the pool's handoff at 'broker'"):
        settings(handoff="metadata", warm=1)
    with pytest.raises(SettingsError, match="handoff at 'broker'"):
        settings(handoff="metadata", warm_windows=[WINDOW])
    settings(handoff="metadata", warm=0, warm_windows=[{**WINDOW, "count": 0}])  # none wanted: allowed


def test_a_warm_pool_takes_the_broker_handoff_by_default() -> None:
    pool = {k: v for k, v in POOL.items() if k != "handoff"}
    s = Settings.from_mapping({"broker_url": "https://jitr.example/broker", "pools": [{**pool, "warm": 1}]})
    assert s.pool("linux").handoff == "broker" and s.pool("linux").warm == 1
    with pytest.raises(SettingsError, match=r"warm .*give the deployment a broker_url"):
        Settings.from_mapping({"pools": [{**pool, "warm": 1}]})  # no broker: nothing to wait at


@pytest.mark.parametrize(
    ("pool", "match"),
    [
        ({"warm": -1}, r"pools\[0\]\.warm .*at least 0"),
        ({"warm": "two"}, "whole number"),
        ({"warm": True}, "whole number"),
        ({"warm": 6}, r"pools\[0\]\.warm .*is 6, more than the pool's max_runners \(5\)"),
        ({"warm_windows": [{**WINDOW, "count": 9}]}, r"warm_windows\[0\]\.count .*is 9, more than"),
        ({"warm_max_idle_s": 10}, "warm_max_idle_s .*at least 60"),
        ({"warm_windows": "mon-fri"}, "must be a list of at most 16"),
        ({"warm_windows": [WINDOW] * 17}, "must be a list of at most 16"),
        ({"warm_windows": [{**WINDOW, "extra": 1}]}, "exactly days, start_hour, end_hour, count"),
        ({"warm_windows": [{"days": ["mon"]}]}, "exactly days, start_hour, end_hour, count"),
        ({"warm_windows": [{**WINDOW, "days": []}]}, "non-empty list"),
        ({"warm_windows": [{**WINDOW, "days": ["monday"]}]}, "non-empty list"),
        ({"warm_windows": [{**WINDOW, "days": "mon"}]}, "non-empty list"),
        ({"warm_windows": [{**WINDOW, "days": ["mon; rm -rf /"]}]}, "non-empty list"),
        ({"warm_windows": [{**WINDOW, "start_hour": 18, "end_hour": 8}]}, "start_hour < end_hour"),
        ({"warm_windows": [{**WINDOW, "end_hour": 25}]}, "end_hour <= 24"),
        ({"warm_windows": [{**WINDOW, "start_hour": -1}]}, "at least 0"),
        ({"warm_windows": [{**WINDOW, "count": "3; reboot"}]}, "whole number"),
        ({"warm_windows": [None]}, "exactly days"),
    ],
    ids=lambda value: repr(value)[:50],
)
def test_malformed_and_hostile_warm_settings_are_refused_by_name(pool: dict[str, Any], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        settings(**pool)


@pytest.mark.parametrize(("hold", "match"), [("0", "at least 1"), ("26", "at most 25"), ("soon", "whole number")])
def test_the_broker_hold_fits_the_function_timeout(hold: str, match: str) -> None:
    with pytest.raises(SettingsError, match=f"JITR_WARM_HOLD_S .*{match}"):
        Settings.from_env({"JITR_POOLS": json.dumps([POOL]), "JITR_BROKER_URL": "https://b/", "JITR_WARM_HOLD_S": hold})
