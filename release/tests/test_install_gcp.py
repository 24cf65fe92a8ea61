"""What a user of GCP gets from the package index: ``pip install 'jitr-functions[gcp]' jitr-gcp``, then
``jitr bundle gcp`` (which vendors the installed jitr distributions as wheels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename
from release_support import ROOT, Artifacts, Venv, fresh_venv, imported_from, installed_jitr, plugins

GCP = ("jitr-core", "jitr-github", "jitr-gcp", "jitr-functions")


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory, built: Artifacts) -> Venv:
    return fresh_venv(tmp_path_factory.mktemp("gcp"), built, "jitr-functions[gcp]", "jitr-gcp")


def test_the_siblings_resolve_by_their_declared_bounds_to_the_built_versions(gcp: Venv, built: Artifacts) -> None:
    installed = installed_jitr(gcp.site_packages)
    assert sorted(installed) == sorted(GCP)  # the AWS backend is not pulled in
    assert {name: dist.version for name, dist in installed.items()} == {name: built.version(name) for name in GCP}
    for origin in imported_from(gcp, "jitr_core", "jitr_gcp", "jitr_functions"):
        assert origin.startswith(str(gcp.site_packages)) and not origin.startswith(str(ROOT)), origin


def test_version_and_plugins(gcp: Venv, built: Artifacts) -> None:
    done = gcp.run("jitr", "--version")
    assert done.returncode == 0, done.stderr
    for name in GCP:
        assert f"{name} {built.version(name)}" in done.stdout, done.stdout
    found = plugins(gcp)
    assert found["gcp"]["distribution"] == "jitr-gcp"
    assert "aws" not in found


def test_bundle_gcp_vendors_the_released_packages(gcp: Venv, built: Artifacts, tmp_path: Path) -> None:
    out = tmp_path / "source"
    done = gcp.run("jitr", "bundle", "gcp", "--out", str(out))
    assert done.returncode == 0, done.stderr
    wheels = sorted((out / "wheels").glob("*.whl"))
    vendored = {str(canonicalize_name(parse_wheel_filename(w.name)[0])): w for w in wheels}
    assert sorted(vendored) == sorted(GCP)
    for name, wheel in vendored.items():
        assert str(parse_wheel_filename(wheel.name)[1]) == built.version(name)
        with zipfile.ZipFile(wheel) as inside, zipfile.ZipFile(built.wheel(name)) as released:
            ours = {n: inside.read(n) for n in inside.namelist() if "dist-info" not in n}
            theirs = {n: released.read(n) for n in released.namelist() if "dist-info" not in n}
            assert ours == theirs, f"the vendored {name} differs from the released wheel"
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if line.startswith("./")] == [f"./wheels/{w.name}" for w in wheels]
    assert not any(line.lower().startswith("jitr") for line in requirements)
