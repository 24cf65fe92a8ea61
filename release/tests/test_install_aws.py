"""What a user of AWS gets from the package index: ``pip install jitr-functions jitr-aws``, then a plugin
of their own and ``jitr bundle aws``.

The bundle needs the package index for the Lambda platform's wheels (skipped without it, a failure
under ``JITR_REQUIRE_TOOLS=1``); pip, which the bundle runs, is pointed at the artifacts the same
way (``PIP_FIND_LINKS``), and the bundled jitr distributions are checked against them too.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from jitr_core.testing.environment import unavailable
from release_support import (
    NETWORK_FAILURES,
    ROOT,
    Artifacts,
    Venv,
    assert_from_artifacts,
    fresh_venv,
    imported_from,
    installed_jitr,
    plugins,
)

AWS = ("jitr-core", "jitr-github", "jitr-aws", "jitr-functions")


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, built: Artifacts) -> Venv:
    return fresh_venv(tmp_path_factory.mktemp("aws"), built, "jitr-functions", "jitr-aws")


@pytest.fixture(scope="module")
def with_plugin(tmp_path_factory: pytest.TempPathFactory, built: Artifacts) -> Venv:
    """The deployment docs' install: the ``aws`` extra (which brings pip for the bundle) and a third-party plugin."""
    return fresh_venv(tmp_path_factory.mktemp("plugin"), built, "jitr-functions[aws]", "jitr-docker-mirror")


def test_the_siblings_resolve_by_their_declared_bounds_to_the_built_versions(aws: Venv, built: Artifacts) -> None:
    installed = installed_jitr(aws.site_packages)
    assert sorted(installed) == sorted(AWS)  # the GCP backend is not pulled in
    assert {name: dist.version for name, dist in installed.items()} == {name: built.version(name) for name in AWS}


def test_the_command_runs_from_the_venv_not_the_checkout(aws: Venv, built: Artifacts) -> None:
    for origin in imported_from(aws, "jitr_core", "jitr_github", "jitr_aws", "jitr_functions"):
        assert origin.startswith(str(aws.site_packages)), origin
        assert not origin.startswith(str(ROOT)), origin
    done = aws.run("jitr", "--version")
    assert done.returncode == 0, done.stderr
    for name in AWS:
        assert f"{name} {built.version(name)}" in done.stdout, done.stdout


def test_plugins_lists_the_aws_backend_alone(aws: Venv) -> None:
    found = plugins(aws)
    assert found["aws"]["distribution"] == "jitr-aws"
    assert "jitr_launch_vm" in found["aws"]["hooks"]
    assert "gcp" not in found and "docker-mirror" not in found


def test_a_third_party_plugin_built_the_same_way_joins_them(with_plugin: Venv, built: Artifacts) -> None:
    found = plugins(with_plugin)
    assert found["docker-mirror"]["distribution"] == "jitr-docker-mirror"
    assert found["docker-mirror"]["version"] == built.version("jitr-docker-mirror")
    assert found["aws"]["distribution"] == "jitr-aws"
    assert not any(plugin.get("error") for plugin in found.values()), found


def test_bundle_aws_packs_the_released_packages_and_the_plugin(
    with_plugin: Venv, built: Artifacts, tmp_path: Path
) -> None:
    out = tmp_path / "jitr.zip"
    links = " ".join([*map(str, built.find_links), os.environ.get("PIP_FIND_LINKS", "")]).strip()
    done = with_plugin.run(
        "jitr", "bundle", "aws", "--python", "3.12", "--out", str(out), env={"PIP_FIND_LINKS": links}, timeout=600
    )
    if done.returncode != 0 and any(failure in done.stderr for failure in NETWORK_FAILURES):
        unavailable(f"pip could not download the Lambda wheels from the package index: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    assert "MB zipped" in done.stdout, done.stdout
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unpacked)
    bundled = installed_jitr(unpacked)
    assert sorted(bundled) == sorted([*AWS, "jitr-docker-mirror"])
    assert_from_artifacts(bundled, built)
