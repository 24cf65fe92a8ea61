"""The pytest fixtures are opt-in: installing jitr-github must not change anyone else's test runs."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest


def test_no_pytest11_entry_point_loads_jitr_github_into_every_run() -> None:
    loaded = [ep for ep in entry_points(group="pytest11") if ep.value.split(":")[0].startswith("jitr_github")]
    assert loaded == []


def test_the_fixtures_are_there_for_a_conftest_that_opts_in(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["jitr_github.testing"]\n')
    pytester.makepyfile(
        """
        def test_uses_them(github_simulator, github_client):
            assert str(github_simulator.app_id) in repr(github_client)
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_without_opting_in_the_fixtures_are_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_it(github_simulator):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'github_simulator' not found*"])
