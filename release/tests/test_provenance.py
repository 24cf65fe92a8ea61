"""The check that installed jitr packages came from the local index catches one that did not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jitr_core.testing.environment import require_tool
from release_support import ROOT, Artifacts, assert_from_artifacts, build, installed_jitr


def test_a_same_named_same_versioned_package_from_elsewhere_is_caught(built: Artifacts, tmp_path: Path) -> None:
    """A same-versioned jitr-core from another index (a squatter, a stale mirror) must not pass."""
    uv = require_tool("uv", "pip install uv")
    source = tmp_path / "jitr-core"
    shutil.copytree(ROOT / "packages" / "jitr-core", source, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (source / "src" / "jitr_core" / "__init__.py").write_text("# not the released jitr-core\n")
    elsewhere = build([source], tmp_path / "elsewhere")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, cwd=tmp_path)
    (wheel,) = elsewhere.glob("*.whl")
    install = [uv, "pip", "install", "--quiet", "--no-deps", "--python", str(venv / "bin" / "python"), str(wheel)]
    subprocess.run(install, check=True, cwd=tmp_path)
    (site,) = venv.glob("lib/python3.*/site-packages")
    installed = installed_jitr(site)
    assert installed["jitr-core"].version == built.version("jitr-core")
    with pytest.raises(AssertionError, match=r"jitr-core .*: jitr_core/__init__.py differs from .*jitr_core-"):
        assert_from_artifacts(installed, built)
