"""``jitr serve``'s periodic intervals and visibility timeout come from the ``[serve]`` settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings
from jitr_functions.local import Intervals, http_limits
from jitr_functions.webhook_server import HttpLimits

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
        ("JITR_SERVE_SCALEDOWN_INTERVAL_S", "0", "JITR_SERVE_SCALEDOWN_INTERVAL_S must be a number of seconds from 1"),
        # past what a thread may wait: the scale-down thread would die at its first wait
        ("JITR_SERVE_SCALEDOWN_INTERVAL_S", "1e10", "JITR_SERVE_SCALEDOWN_INTERVAL_S must be .* to 31536000"),
        ("JITR_SERVE_REBALANCER_INTERVAL_S", "inf", "JITR_SERVE_REBALANCER_INTERVAL_S must be a number of seconds"),
        ("JITR_SERVE_VISIBILITY_TIMEOUT_S", "inf", "JITR_SERVE_VISIBILITY_TIMEOUT_S must be a number of seconds"),
        ("JITR_SERVE_VISIBILITY_TIMEOUT_S", "soon", "JITR_SERVE_VISIBILITY_TIMEOUT_S must be a number of seconds"),
        ("JITR_SERVE_SCALEDOWN_S", "10", "JITR_SERVE_SCALEDOWN_S is not a setting"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS, variable: value})
    with pytest.raises(SettingsError, match=message):
        Intervals.from_settings(settings)


def test_the_serve_section_sets_the_http_limits_and_the_options_win(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text("[serve]\nhttp_threads = 8\nhttp_backlog = 64\nhttp_request_timeout_s = 2.5\n")
    settings = Settings.from_toml(path)
    Intervals.from_settings(settings)  # the http_* keys are [serve] settings too

    limits = http_limits(settings)
    assert (limits.threads, limits.backlog, limits.request_timeout_s) == (8, 64, 2.5)
    assert limits.connections == HttpLimits().connections  # not set: the default
    assert http_limits(settings, threads=2, backlog=None).threads == 2  # an --http-* option wins
    assert http_limits(settings, threads=2, backlog=None).backlog == 64


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JITR_SERVE_HTTP_THREADS", "0", "JITR_SERVE_HTTP_THREADS must be a whole number >= 1, found '0'"),
        ("JITR_SERVE_HTTP_BACKLOG", "1.5", "JITR_SERVE_HTTP_BACKLOG must be a whole number >= 1"),
        ("JITR_SERVE_HTTP_IDLE_TIMEOUT_S", "never", "JITR_SERVE_HTTP_IDLE_TIMEOUT_S must be a number of seconds > 0"),
        ("JITR_SERVE_HTTP_REQUEST_TIMEOUT_S", "inf", "JITR_SERVE_HTTP_REQUEST_TIMEOUT_S must be a number of seconds"),
    ],
)
def test_bad_http_limits_name_the_variable(variable: str, value: str, message: str) -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS, variable: value})
    with pytest.raises(SettingsError, match=message):
        http_limits(settings)
