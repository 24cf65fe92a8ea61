"""The release gates: sibling bounds (``scripts/check_bounds.py``) and changelogs against release tags
(``scripts/check_changelog.py``), on the real packages and on temporary copies that break them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jitr_core.testing.environment import require_tool
from release_support import PACKAGES, ROOT

BOUNDS = ROOT / "scripts" / "check_bounds.py"
CHANGELOG = ROOT / "scripts" / "check_changelog.py"


def run(script: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def copy_packages(target: Path) -> Path:
    """The five pyproject.toml and CHANGELOG.md files, as they are now, under ``target/packages``."""
    for name in PACKAGES:
        (target / "packages" / name).mkdir(parents=True)
        for file in ("pyproject.toml", "CHANGELOG.md"):
            shutil.copy(ROOT / "packages" / name / file, target / "packages" / name / file)
    return target / "packages"


def set_version(packages: Path, name: str, version: str) -> None:
    pyproject = packages / name / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text())
    assert count == 1
    pyproject.write_text(text)


def test_every_sibling_range_admits_the_current_versions() -> None:
    done = run(BOUNDS)
    assert done.returncode == 0, done.stderr
    assert "sibling bounds admit the current versions" in done.stdout


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0"])
def test_a_core_release_outside_the_plugins_ranges_is_reported(tmp_path: Path, version: str) -> None:
    packages = copy_packages(tmp_path)
    set_version(packages, "jitr-core", version)
    done = run(BOUNDS, "--packages", str(packages))
    assert done.returncode == 1
    broken = sorted(set(re.findall(r"^sibling bound broken: (\S+)", done.stderr, re.MULTILINE)))
    assert broken == ["jitr-aws", "jitr-functions", "jitr-gcp", "jitr-github"], done.stderr
    assert f"jitr-core is {version}" in done.stderr


def test_a_plugin_release_outside_the_functions_extra_is_reported(tmp_path: Path) -> None:
    packages = copy_packages(tmp_path)
    set_version(packages, "jitr-aws", "0.2.0")
    done = run(BOUNDS, "--packages", str(packages))
    assert done.returncode == 1
    assert "jitr-functions (extra 'aws') requires 'jitr-aws>=0.1.1,<0.2', but jitr-aws is 0.2.0" in done.stderr
    assert "jitr-gcp" not in done.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding copies of the packages' pyproject.toml and CHANGELOG.md, committed."""
    git = require_tool("git", "apt-get install git")
    copy_packages(tmp_path)
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "packages"]):
        subprocess.run(
            [git, "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=tmp_path, check=True
        )
    return tmp_path


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=repo, check=True)


def release(repo: Path, name: str, version: str) -> None:
    """What docs/release.md says: date the unreleased section, commit, tag."""
    changelog = repo / "packages" / name / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## {version} (unreleased)", f"## {version} (2026-12-01)", 1))
    git(repo, "commit", "-q", "-am", f"Release {name} {version}")
    git(repo, "tag", f"{name}-v{version}")


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(CHANGELOG, "--root", str(repo), *args)


def test_the_packages_as_they_are_pass() -> None:
    done = run(CHANGELOG)
    assert done.returncode == 0, done.stderr


def test_a_never_released_package_needs_an_unreleased_section(repo: Path) -> None:
    assert check(repo).returncode == 0
    changelog = repo / "packages" / "jitr-gcp" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("## 0.1.1 (unreleased)", "## 0.1.1", 1))
    done = check(repo)
    assert done.returncode == 1
    assert "jitr-gcp: never released (no tag), so CHANGELOG.md needs a '## 0.1.1 (unreleased)'" in done.stderr


def test_a_change_after_a_release_needs_a_new_version_and_entry(repo: Path) -> None:
    release(repo, "jitr-core", "0.1.1")
    assert check(repo).returncode == 0, check(repo).stderr
    described = check(repo, "--tag", "jitr-core-v0.1.1", "--notes", str(repo / "notes.md"))
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines() == ["package=jitr-core", "version=0.1.1", "directory=packages/jitr-core"]
    changelog_lines = (repo / "packages" / "jitr-core" / "CHANGELOG.md").read_text().splitlines()
    first_entry = next(line for line in changelog_lines if line.startswith("- "))
    assert (repo / "notes.md").read_text().startswith(first_entry + "\n")  # the released section's entries

    (repo / "packages" / "jitr-core" / "new.py").write_text("x = 1\n")
    done = check(repo)
    assert done.returncode == 1
    assert "jitr-core: files changed since jitr-core-v0.1.1, but pyproject.toml still says 0.1.1" in done.stderr

    set_version(repo / "packages", "jitr-core", "0.1.2")
    done = check(repo)
    assert done.returncode == 1
    assert "needs a '## 0.1.2 (unreleased)' section first" in done.stderr

    changelog = repo / "packages" / "jitr-core" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("# Changelog\n", "# Changelog\n\n## 0.1.2 (unreleased)\n", 1))
    assert "has no entry" in check(repo).stderr
    changelog.write_text(changelog.read_text().replace("## 0.1.2 (unreleased)\n", "## 0.1.2 (unreleased)\n\n- New.\n"))
    assert check(repo).returncode == 0, check(repo).stderr


def test_a_tag_must_match_the_declared_version_and_a_released_section(repo: Path) -> None:
    assert "declares 0.1.1, not 0.1.2" in check(repo, "--tag", "jitr-aws-v0.1.2").stderr
    assert "still marked unreleased" in check(repo, "--tag", "jitr-aws-v0.1.1").stderr
    assert "no package jitr-nope" in check(repo, "--tag", "jitr-nope-v1.0.0").stderr
    assert "not a package tag" in check(repo, "--tag", "images-v1").stderr
