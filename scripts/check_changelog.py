#!/usr/bin/env python3
"""Check each package's CHANGELOG against its git tags, or describe the release a tag makes.

A package is released by tagging ``jitr-<name>-v<version>`` (``jitr-core-v0.1.2``). Its
CHANGELOG.md keeps the newest section first, headed ``## <version> (unreleased)`` until the
release, when ``(unreleased)`` becomes the release date. See docs/release.md.

    python scripts/check_changelog.py [--root DIR]

For every package under ``packages/``:

- never released (no tag yet): the newest section must be ``## <version> (unreleased)`` with at
  least one entry, ``<version>`` being the one pyproject.toml declares;
- released, and files under its directory changed since its newest tag (committed or not): the
  same, and ``<version>`` must be newer than the tag's;
- released and unchanged: the newest section must name the version pyproject.toml declares.

    python scripts/check_changelog.py --tag jitr-core-v0.1.2 [--notes FILE]

checks that the tag names a package whose pyproject.toml declares that version and whose
CHANGELOG has a dated (released) section for it, prints ``package=...``, ``version=...`` and
``directory=...`` lines (for ``$GITHUB_OUTPUT``) and writes the section's entries to FILE.

Exit status 1 with one line per problem. Needs ``packaging`` besides the standard library.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

DEFAULT_ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## (?P<version>\S+)(?: \((?P<note>[^)]*)\))?\s*$")
TAG = re.compile(r"^(?P<package>jitr-[a-z0-9-]+?)-v(?P<version>\d[^\s]*)$")


@dataclass(frozen=True)
class Section:
    version: str
    note: str
    body: str

    @property
    def unreleased(self) -> bool:
        return self.note == "unreleased"


def sections(changelog: Path) -> list[Section]:
    """The ``## <version> (<note>)`` sections of ``changelog``, newest first, with their lines."""
    found: list[Section] = []
    heading: re.Match[str] | None = None
    lines: list[str] = []
    for line in [*changelog.read_text().splitlines(), "## end"]:
        match = HEADING.match(line)
        if match is None and not line.startswith("## "):
            lines.append(line)
            continue
        if heading is not None:
            found.append(Section(heading["version"], heading["note"] or "", "\n".join(lines).strip("\n")))
        heading, lines = match, []
    return found


def entries(section: Section) -> int:
    """How many list items (``- `` or ``* `` lines) the section holds."""
    return sum(1 for line in section.body.splitlines() if line.startswith(("- ", "* ")))


def git(root: Path, *args: str) -> str | None:
    """``git args`` in ``root``; None when ``root`` is not in a git checkout."""
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "not a git repository" in done.stderr:
            return None
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def last_tag(root: Path, package: str) -> tuple[str, Version] | None:
    """The package's newest release tag and its version (by version, not by date)."""
    listed = git(root, "tag", "--list", f"{package}-v*") or ""
    tagged = []
    for tag in listed.split():
        match = TAG.match(tag)
        if match and match["package"] == package:
            try:
                tagged.append((Version(match["version"]), tag))
            except InvalidVersion:
                continue
    if not tagged:
        return None
    version, tag = max(tagged)
    return tag, version


def check_package(root: Path, directory: Path) -> list[str]:
    project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    changelog = directory / "CHANGELOG.md"
    if not changelog.exists():
        return [f"{name}: {changelog.relative_to(root)} is missing"]
    found = sections(changelog)
    if not found:
        return [f"{name}: {changelog.relative_to(root)} has no '## <version>' section"]
    newest = found[0]
    tag = last_tag(root, name)
    if tag is None:
        reason = "never released (no tag)"
    else:
        changed = git(root, "diff", "--name-only", tag[0], "--", str(directory.relative_to(root))) or ""
        untracked = git(root, "ls-files", "--others", "--exclude-standard", "--", str(directory.relative_to(root)))
        if not (changed.strip() or (untracked or "").strip()):
            if newest.version != version:
                return [f"{name}: pyproject.toml says {version}, the newest CHANGELOG section is {newest.version}"]
            return []
        reason = f"files changed since {tag[0]}"
        if Version(version) <= tag[1]:
            return [f"{name}: {reason}, but pyproject.toml still says {version}: bump the version"]
    problems = []
    if not newest.unreleased:
        problems.append(
            f"{name}: {reason}, so CHANGELOG.md needs a '## {version} (unreleased)' section first "
            f"(the newest is '## {newest.version}{f' ({newest.note})' if newest.note else ''}')"
        )
    elif newest.version != version:
        problems.append(f"{name}: the unreleased CHANGELOG section is {newest.version}, pyproject.toml says {version}")
    elif entries(newest) == 0:
        problems.append(f"{name}: {reason}, but the '## {version} (unreleased)' section has no entry")
    return problems


def describe_tag(root: Path, tag: str, notes: Path | None) -> list[str]:
    match = TAG.match(tag)
    if match is None:
        return [f"{tag!r} is not a package tag (jitr-<name>-v<version>)"]
    package, version = match["package"], match["version"]
    directory = root / "packages" / package
    if not (directory / "pyproject.toml").exists():
        return [f"{tag}: there is no package {package} under packages/"]
    declared = tomllib.loads((directory / "pyproject.toml").read_text())["project"]["version"]
    if declared != version:
        return [f"{tag}: packages/{package}/pyproject.toml declares {declared}, not {version}"]
    section = next((s for s in sections(directory / "CHANGELOG.md") if s.version == version), None)
    if section is None:
        return [f"{tag}: packages/{package}/CHANGELOG.md has no '## {version} (<date>)' section"]
    if section.unreleased:
        return [f"{tag}: the CHANGELOG section of {version} is still marked unreleased; put the release date there"]
    if notes is not None:
        notes.write_text(section.body + "\n")
    print(f"package={package}\nversion={version}\ndirectory=packages/{package}")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the repository's top directory")
    parser.add_argument("--tag", help="describe the release this tag makes instead of checking every package")
    parser.add_argument("--notes", type=Path, help="with --tag: write the release's CHANGELOG entries here")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.tag:
        problems = describe_tag(root, args.tag, args.notes)
    else:
        packages = sorted(p.parent for p in (root / "packages").glob("*/pyproject.toml"))
        problems = [line for directory in packages for line in check_package(root, directory)]
        if not problems:
            print(f"changelogs: {len(packages)} packages checked against their release tags")
    for line in problems:
        print(f"changelog: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
