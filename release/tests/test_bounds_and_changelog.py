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


def version_of(name: str, packages: Path = ROOT / "packages") -> str:
    found = re.search(r'(?m)^version = "([^"]+)"$', (packages / name / "pyproject.toml").read_text())
    assert found
    return found.group(1)


def next_version(version: str, part: str) -> str:
    major, minor, patch = (int(n) for n in version.split("."))
    return f"{major}.{minor + 1}.0" if part == "minor" else f"{major}.{minor}.{patch + 1}"


def set_version(packages: Path, name: str, version: str) -> None:
    pyproject = packages / name / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text())
    assert count == 1
    pyproject.write_text(text)


def test_every_sibling_range_admits_the_current_versions() -> None:
    done = run(BOUNDS)
    assert done.returncode == 0, done.stderr
    assert "sibling bounds admit the current versions" in done.stdout


@pytest.mark.parametrize("version", [next_version(version_of("jitr-core"), "minor"), "0.0.1"])
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
    required = re.search(r"jitr-aws>=[^\"]+", (packages / "jitr-functions" / "pyproject.toml").read_text())
    assert required
    released = next_version(version_of("jitr-aws"), "minor")
    set_version(packages, "jitr-aws", released)
    done = run(BOUNDS, "--packages", str(packages))
    assert done.returncode == 1
    assert f"jitr-functions (extra 'aws') requires '{required.group()}', but jitr-aws is {released}" in done.stderr
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
    version = version_of("jitr-gcp")
    changelog = repo / "packages" / "jitr-gcp" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## {version} (unreleased)", f"## {version}", 1))
    done = check(repo)
    assert done.returncode == 1
    assert f"jitr-gcp: never released (no tag), so CHANGELOG.md needs a '## {version} (unreleased)'" in done.stderr


def test_a_change_after_a_release_needs_a_new_version_and_entry(repo: Path) -> None:
    version = version_of("jitr-core")
    release(repo, "jitr-core", version)
    assert check(repo).returncode == 0, check(repo).stderr
    described = check(repo, "--tag", f"jitr-core-v{version}", "--notes", str(repo / "notes.md"))
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines() == ["package=jitr-core", f"version={version}", "directory=packages/jitr-core"]
    changelog_lines = (repo / "packages" / "jitr-core" / "CHANGELOG.md").read_text().splitlines()
    first_entry = next(line for line in changelog_lines if line.startswith("- "))
    assert (repo / "notes.md").read_text().startswith(first_entry + "\n")  # the released section's entries

    (repo / "packages" / "jitr-core" / "new.py").write_text("x = 1\n")
    done = check(repo)
    assert done.returncode == 1
    stale = f"jitr-core: files changed since jitr-core-v{version}, but pyproject.toml still says {version}"
    assert stale in done.stderr

    fix = next_version(version, "patch")
    set_version(repo / "packages", "jitr-core", fix)
    done = check(repo)
    assert done.returncode == 1
    assert f"needs a '## {fix} (unreleased)' section first" in done.stderr

    changelog = repo / "packages" / "jitr-core" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("# Changelog\n", f"# Changelog\n\n## {fix} (unreleased)\n", 1))
    assert "has no entry" in check(repo).stderr
    section = f"## {fix} (unreleased)\n"
    changelog.write_text(changelog.read_text().replace(section, section + "\n- New.\n"))
    assert check(repo).returncode == 0, check(repo).stderr


def test_a_tag_must_match_the_declared_version_and_a_released_section(repo: Path) -> None:
    version = version_of("jitr-aws")
    later = next_version(version, "patch")
    assert f"declares {version}, not {later}" in check(repo, "--tag", f"jitr-aws-v{later}").stderr
    assert "still marked unreleased" in check(repo, "--tag", f"jitr-aws-v{version}").stderr
    assert "no package jitr-nope" in check(repo, "--tag", "jitr-nope-v1.0.0").stderr
    assert "not a package tag" in check(repo, "--tag", "images-v1").stderr
