"""``--exclude-plugin`` takes the same names for both bundles: a distribution's or a plugin's.

The plugins are real installed distributions (a ``dist-info`` on ``sys.path``), found through
their entry points as the bundles find them; nothing is built here, so no network is needed.
"""

from __future__ import annotations

import importlib.util
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from fake_plugin import install_fake_plugin
from jitr_core.errors import JitrError
from jitr_functions.bundle_aws import JITR_DISTRIBUTIONS, bundled_distributions, pinned_dependencies, write_zip
from jitr_functions.bundle_gcp import write_bundle
from jitr_functions.bundle_plugins import (
    canonical,
    installed_plugins,
    resolve_exclusions,
    verify_plugins,
    warn_unknown,
)

needs_aws = pytest.mark.skipif(importlib.util.find_spec("jitr_aws") is None, reason="the aws extra is not installed")
needs_gcp = pytest.mark.skipif(importlib.util.find_spec("jitr_gcp") is None, reason="the gcp extra is not installed")
PLUGINS = {"jitr-aws": frozenset({"aws"}), "jitr-mirror": frozenset({"mirror"}), "mirror": frozenset({"cache"})}


@pytest.mark.parametrize(
    ("name", "distribution"),
    [("jitr-aws", "jitr-aws"), ("aws", "jitr-aws"), ("JITR_AWS", "jitr-aws"), ("Jitr.Mirror", "jitr-mirror")],
)
def test_a_name_is_a_distribution_or_a_plugin_compared_as_pip_does(name: str, distribution: str) -> None:
    assert resolve_exclusions([name], plugins=PLUGINS).distributions == {distribution}


def test_a_distribution_name_wins_over_a_plugin_name() -> None:
    assert resolve_exclusions(["mirror"], plugins=PLUGINS).distributions == {"mirror"}


def test_a_plugin_name_shipped_twice_is_an_error() -> None:
    plugins = {**PLUGINS, "jitr-other": frozenset({"aws"})}
    with pytest.raises(JitrError, match=r"several distributions ship a plugin of that name \(jitr-aws, jitr-other\)"):
        resolve_exclusions(["aws"], plugins=plugins)


def test_unknown_names_are_reported_not_excluded() -> None:
    resolved = resolve_exclusions(["jitr-mirorr", "mirror"], plugins=PLUGINS)
    assert resolved.distributions == {"mirror"}
    assert resolved.unknown == ("jitr-mirorr",)


def test_the_installed_plugins_are_found_by_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_plugin(monkeypatch, tmp_path, "Jitr_Mirror", "Mirror")
    assert installed_plugins()["jitr-mirror"] == {"mirror"}


def test_the_lambda_bundle_leaves_a_plugin_out_by_either_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_plugin(monkeypatch, tmp_path, "jitr-mirror", "mirror")
    assert bundled_distributions()[: len(JITR_DISTRIBUTIONS)] == JITR_DISTRIBUTIONS
    assert "jitr-mirror" in bundled_distributions()
    assert "jitr-gcp" not in bundled_distributions()  # another cloud's backend is always left out
    for name in ("jitr-mirror", "mirror"):
        assert "jitr-mirror" not in bundled_distributions([name]), name


@needs_aws
@pytest.mark.parametrize("name", ["jitr-aws", "aws"])
def test_the_lambda_bundle_keeps_its_backend(name: str) -> None:
    with pytest.raises(JitrError, match="jitr-aws cannot be left out of this bundle"):
        bundled_distributions([name])


@needs_gcp
@pytest.mark.parametrize("name", ["jitr-gcp", "gcp"])
def test_the_cloud_run_bundle_keeps_its_backend_and_writes_nothing(name: str, tmp_path: Path) -> None:
    with pytest.raises(JitrError, match="jitr-gcp cannot be left out of this bundle"):
        write_bundle(tmp_path / "out", [name])
    assert not (tmp_path / "out").exists()


def test_the_command_warns_about_a_name_no_plugin_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_plugin(monkeypatch, tmp_path, "jitr-mirror", "mirror")
    warn_unknown(["mirror", "jitr-mirorr"])
    err = capsys.readouterr().err
    assert "--exclude-plugin jitr-mirorr: no installed jitr plugin has that name" in err
    assert "installed: " in err and "jitr-mirror (mirror)" in err
    assert "--exclude-plugin mirror" not in err


def _layout_plugin(site: Path, dist: str, entry: str, module: str, body: str) -> None:
    """A plugin distribution as pip lays it out in a bundle: its module and its dist-info."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[jitr]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(body)


def test_bundled_plugins_are_loaded_from_the_layout_alone(tmp_path: Path) -> None:
    _layout_plugin(tmp_path, "jitr-mirror", "mirror", "jitr_mirror_layout", "import json\n")
    assert verify_plugins([tmp_path]) == ("mirror",)

    _layout_plugin(tmp_path, "jitr-cache", "cache", "jitr_cache_layout", "import jitr_core\n")  # not in the layout
    with pytest.raises(
        JitrError, match=r"plugin 'cache' \(jitr_cache_layout: ModuleNotFoundError: No module named 'jitr_core'\)"
    ):
        verify_plugins([tmp_path])

    (tmp_path / "jitr_cache_layout.py").write_text("raise RuntimeError('no licence')\n")
    with pytest.raises(
        JitrError, match=r"no bundle is written: plugin 'cache' .*RuntimeError: no licence.*--exclude-plugin"
    ):
        verify_plugins([tmp_path])


def test_the_lambda_zip_goes_inside_an_existing_directory(tmp_path: Path) -> None:
    source, out = tmp_path / "target", tmp_path / "dist"
    (source / "jitr_functions").mkdir(parents=True)
    (source / "jitr_functions" / "__init__.py").write_text("")
    out.mkdir()

    written = write_zip(source, out)

    assert written == out / "jitr-aws-lambda.zip" and zipfile.is_zipfile(written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "target"]  # no .partial left beside it
    assert sorted(p.name for p in out.iterdir()) == ["jitr-aws-lambda.zip"]


def test_the_lambda_bundle_pins_third_party_libraries_to_the_installed_versions() -> None:
    pins = pinned_dependencies(JITR_DISTRIBUTIONS)
    for name in ("pluggy", "requests", "PyJWT", "cryptography"):
        assert f"{name}=={metadata.version(name)}" in pins, pins
    assert not any(pin.lower().startswith("jitr") for pin in pins)
    assert pins == tuple(sorted(pins, key=lambda pin: canonical(pin.split("==")[0])))
