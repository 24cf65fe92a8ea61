"""``jitr serve``'s worker threads per queue: sized from the CPUs, set by ``[serve]`` keys or ``--workers``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_support import POOL, QUIET
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings
from jitr_functions.local import Intervals, Workers

POOLS = json.dumps([{"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["m7.large"]}])


def test_defaults_are_sized_from_the_cpus() -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS})
    assert Workers.from_settings(settings, cpus=1) == Workers(jobs=32, lifecycle=2)
    assert Workers.from_settings(settings, cpus=2) == Workers(jobs=64, lifecycle=4)
    assert Workers.from_settings(settings, cpus=64) == Workers(jobs=128, lifecycle=16)  # capped
    assert Workers.from_settings(settings).jobs >= 32


def test_the_serve_section_sets_them_and_workers_option_sets_both(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text("[serve]\njobs_workers = 12\nlifecycle_workers = 3\n")
    settings = Settings.from_toml(path)
    Intervals.from_settings(settings)  # the *_workers keys are [serve] settings too
    assert Workers.from_settings(settings, cpus=2) == Workers(jobs=12, lifecycle=3)
    assert Workers.from_settings(settings, given=5) == Workers(jobs=5, lifecycle=5)
    from_env = Settings.from_env({"JITR_POOLS": POOLS, "JITR_SERVE_JOBS_WORKERS": "7"})
    assert Workers.from_settings(from_env, cpus=2) == Workers(jobs=7, lifecycle=4)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JITR_SERVE_JOBS_WORKERS", "0", "JITR_SERVE_JOBS_WORKERS must be a whole number from 1 to 1024, found '0'"),
        ("JITR_SERVE_LIFECYCLE_WORKERS", "2.5", "JITR_SERVE_LIFECYCLE_WORKERS must be a whole number"),
        ("JITR_SERVE_JOBS_WORKERS", "many", "JITR_SERVE_JOBS_WORKERS must be a whole number"),
        ("JITR_SERVE_JOBS_WORKERS", "5000", "JITR_SERVE_JOBS_WORKERS must be a whole number from 1 to 1024"),
    ],
)
def test_bad_worker_counts_name_the_variable(variable: str, value: str, message: str) -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS, variable: value})
    with pytest.raises(SettingsError, match=message):
        Workers.from_settings(settings)


def test_a_misspelt_key_names_the_variable_and_lists_the_worker_keys() -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS, "JITR_SERVE_WORKERS": "4"})
    with pytest.raises(SettingsError, match=r"JITR_SERVE_WORKERS is not a setting; known: .*'jobs_workers'"):
        Intervals.from_settings(settings)


def test_bad_workers_option_is_refused() -> None:
    settings = Settings.from_env({"JITR_POOLS": POOLS})
    with pytest.raises(SettingsError, match="--workers must be a whole number >= 1"):
        Workers.from_settings(settings, given=0)


def test_the_runtime_starts_the_configured_threads_per_queue(e2e_sandbox) -> None:
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, workers=Workers(jobs=3, lifecycle=1))
    assert sandbox.runtime.workers == Workers(jobs=3, lifecycle=1)
    names = [thread.name for thread in sandbox.runtime._threads]
    assert sum(name.startswith("jitr-jobs-") for name in names) == 3
    assert sum(name.startswith("jitr-lifecycle-") for name in names) == 1
