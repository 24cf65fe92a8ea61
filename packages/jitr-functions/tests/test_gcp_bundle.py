"""``jitr bundle gcp``: a source directory with main.py, vendored jitr wheels and pinned requirements."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from jitr_functions.bundle_gcp import TARGETS, _repack

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")

pytest_plugins = ["conftest_gcp"]


def requirements(bundle: Path) -> list[str]:
    return [line for line in (bundle / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]


def test_main_exposes_the_five_targets_from_jitr_functions_gcp(gcp_bundle: Path) -> None:
    tree = ast.parse((gcp_bundle / "main.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert [(node.module, sorted(a.name for a in node.names)) for node in imports] == [
        ("jitr_functions", ["coldstart"]),  # coldstart.pause() before the targets' import
        ("jitr_functions.gcp", sorted(TARGETS)),
    ]
    assert sorted(TARGETS) == ["broker", "lifecycle", "rebalancer", "scaledown", "scaleup", "webhook"]


def test_jitr_and_every_installed_plugin_are_vendored_as_wheels(gcp_bundle: Path) -> None:
    wheels = sorted((gcp_bundle / "wheels").glob("*.whl"))
    plugins = {ep.dist.name for ep in metadata.entry_points(group="jitr") if ep.dist is not None}
    vendored = {w.name.split("-")[0].replace("_", "-") for w in wheels}

    assert {"jitr-core", "jitr-github", "jitr-functions", "jitr-gcp"} | plugins <= vendored
    named = [line for line in requirements(gcp_bundle) if line.startswith("./")]
    assert named == [f"./wheels/{w.name}" for w in wheels]
    with zipfile.ZipFile(next(w for w in wheels if w.name.startswith("jitr_functions-"))) as wheel:
        assert "jitr_functions/gcp/handlers.py" in wheel.namelist()
        assert any(name.endswith(".dist-info/RECORD") for name in wheel.namelist())


def test_every_other_requirement_is_pinned_to_the_installed_version(gcp_bundle: Path) -> None:
    pins = dict(line.split("==") for line in requirements(gcp_bundle) if not line.startswith("./"))

    assert pins["functions-framework"] == metadata.version("functions-framework")
    for name in ("google-cloud-pubsub", "google-cloud-firestore", "google-cloud-compute", "pluggy", "PyJWT"):
        assert pins[name] == metadata.version(name)
    assert not any(name.lower().startswith("jitr") for name in pins)


def test_the_command_prints_what_it_wrote_and_can_leave_a_plugin_out(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("jitr")),
            "bundle",
            "gcp",
            "--out",
            str(tmp_path),
            "--exclude-plugin",
            "aws",  # the plugin's name; its distribution's, jitr-aws, works as well
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'main.py'}" in done.stdout
    assert f"wrote {tmp_path / 'requirements.txt'}" in done.stdout
    assert not list(tmp_path.glob("wheels/jitr_aws-*.whl"))
    assert "boto3" not in (tmp_path / "requirements.txt").read_text()


def test_the_wheels_install_offline_into_a_fresh_environment(gcp_bundle: Path, tmp_path: Path) -> None:
    """pip takes the vendored wheels as requirements.txt names them (dependencies come from this environment)."""
    target = tmp_path / "site"
    wheels = [line for line in requirements(gcp_bundle) if line.startswith("./")]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), *wheels],
        cwd=gcp_bundle,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    code = "import jitr_functions.gcp, jitr_gcp; print(jitr_functions.gcp.__file__)"
    probe = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(target))


def test_a_distribution_installed_from_a_wheel_is_rebuilt_from_its_installed_files(
    gcp_bundle: Path, tmp_path: Path
) -> None:
    original = next((gcp_bundle / "wheels").glob("jitr_gcp-*.whl"))
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(original)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "wheels").mkdir()

    rebuilt = _repack(metadata.PathDistribution(next(site.glob("jitr_gcp-*.dist-info"))), tmp_path / "wheels")

    assert rebuilt.name == original.name
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(rebuilt) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert all(a.read(n) == b.read(n) for n in a.namelist() if not n.endswith("RECORD"))
        # no build time in the bytes: the same installed files make the same wheel, and Terraform,
        # which names the source after its hash, deploys nothing new
        assert {info.date_time for info in b.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    (tmp_path / "again").mkdir()
    assert _repack(
        metadata.PathDistribution(next(site.glob("jitr_gcp-*.dist-info"))), tmp_path / "again"
    ).read_bytes() == (rebuilt.read_bytes())
