"""``jitr --version``: one ``name version`` line per installed jitr distribution and plugin distribution."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from jitr_functions.cli import main

JITR = Path(sys.executable).with_name("jitr")


def installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def test_every_installed_jitr_distribution_is_listed_with_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [n for n in ("jitr-core", "jitr-github", "jitr-functions", "jitr-aws", "jitr-gcp") if installed(n)]
    assert lines[: len(expected)] == [f"{name} {version(name)}" for name in expected]
    assert all(len(line.split(" ")) == 2 for line in lines)


def test_a_third_party_plugin_distribution_is_listed(tmp_path: Path) -> None:
    info = tmp_path / "acme_jitr_mirror-1.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-jitr-mirror\nVersion: 1.4.2\n")
    (info / "entry_points.txt").write_text("[jitr]\nacme-mirror = acme_jitr_mirror.plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([str(JITR), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    own = lines.index(f"jitr-functions {version('jitr-functions')}")
    assert lines.index("acme-jitr-mirror 1.4.2") > own  # after jitr's own; its module is never imported
