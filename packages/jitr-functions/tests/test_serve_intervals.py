"""``jitr serve``'s periodic intervals and visibility timeout come from the ``[serve]`` settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings
from jitr_functions.local import Intervals

POOLS = json.dumps([{"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["m7.large"]}])


def test_defaults_are_five_minutes_one_minute_and_two_minutes() -> None:
    intervals = Intervals.from_settings(Settings.from_env({"JITR_POOLS": POOLS}))
    assert (intervals.scaledown_s, intervals.rebalancer_s, intervals.visibility_timeout_s) == (300.0, 60.0, 120)


def test_the_serve_section_sets_them(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text("[serve]\nscaledown_interval_s = 20\nrebalancer_interval_s = 5.5\nvisibility_timeout_s = 10\n")
    intervals = Intervals.from_settings(Settings.from_toml(path))
    assert (intervals.scaledown_s, intervals.rebalancer_s, intervals.visibility_timeout_s) == (20.0, 5.5, 10)
    from_env = Intervals.from_settings(
        Settings.from_env({"JITR_POOLS": POOLS, "JITR_SERVE_SCALEDOWN_INTERVAL_S": "30"})
    )
    assert from_env.scaledown_s == 30.0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JITR_SERVE_SCALEDOWN_INTERVAL_S", "0", "JITR_SERVE_SCALEDOWN_INTERVAL_S must be a number of seconds >= 1"),
        ("JITR_SERVE_VISIBILITY_TIMEOUT_S", "soon", "JITR_SERVE_VISIBILITY_TIMEOUT_S must be a number of seconds"),
        ("JITR_SERVE_SCALEDOWN_S", "10", "JITR_SERVE_SCALEDOWN_S is not a setting"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS, variable: value})
    with pytest.raises(SettingsError, match=message):
        Intervals.from_settings(settings)
