#!/usr/bin/env python3
"""Check that every jitr package's requirements on its siblings admit the siblings' current versions.

Each package under ``packages/`` declares ranges such as ``jitr-core>=0.2.0,<0.3`` for the jitr
packages it needs (in ``dependencies`` and in every extra). A release that moves a package out of
a range its siblings declare would publish a set that cannot be installed together; this script
names every such requirement and exits 1.

    python scripts/check_bounds.py [--packages DIR]

Needs only ``packaging`` besides the standard library.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

DEFAULT_PACKAGES = Path(__file__).resolve().parent.parent / "packages"


def versions(packages: Path) -> dict[str, Version]:
    """The version every package directory under ``packages`` declares, by canonical name."""
    found: dict[str, Version] = {}
    for pyproject in sorted(packages.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        found[canonicalize_name(project["name"])] = Version(project["version"])
    return found


def problems(packages: Path) -> list[str]:
    """One line per sibling requirement that excludes the sibling's current version."""
    current = versions(packages)
    found = []
    for pyproject in sorted(packages.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        declared = [("dependencies", r) for r in project.get("dependencies", [])]
        for extra, requirements in sorted(project.get("optional-dependencies", {}).items()):
            declared += [(f"extra {extra!r}", r) for r in requirements]
        for where, text in declared:
            requirement = Requirement(text)
            sibling = canonicalize_name(requirement.name)
            if sibling not in current:
                continue
            if not requirement.specifier:
                found.append(f"{project['name']} ({where}) requires {sibling} with no version range")
            elif not requirement.specifier.contains(current[sibling], prereleases=True):
                found.append(
                    f"{project['name']} ({where}) requires {text!r}, but {sibling} is {current[sibling]}: "
                    f"widen the range in {pyproject.relative_to(packages.parent)} or release {sibling} differently"
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=Path, default=DEFAULT_PACKAGES, help="the directory holding the packages")
    args = parser.parse_args(argv)
    current = versions(args.packages)
    if not current:
        print(f"no packages under {args.packages}", file=sys.stderr)
        return 1
    found = problems(args.packages)
    for line in found:
        print(f"sibling bound broken: {line}", file=sys.stderr)
    if not found:
        print("sibling bounds admit the current versions: " + ", ".join(f"{n} {v}" for n, v in current.items()))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
