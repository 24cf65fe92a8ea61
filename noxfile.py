"""Developer sessions: per-package tests on each Python, lint, benchmarks.

Packages are discovered from ``packages/``. A package's test session installs only that package,
its declared dependencies and its ``test`` extra (plus the extras named below); sibling packages
always come from this checkout, and the session fails if one was taken from an index.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ROOT / "packages"
PYTHONS = ["3.11", "3.12", "3.13"]
# Extras a package's tests need beyond ``test`` (jitr-functions drives both cloud plugins).
TEST_EXTRAS = {"jitr-functions": ["test", "aws", "gcp"]}

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "lint"]
nox.needs_version = ">=2024.3.2"


def _pyproject(name: str) -> dict:
    return tomllib.loads((PACKAGES / name / "pyproject.toml").read_text())


def _local() -> list[str]:
    return sorted(p.name for p in PACKAGES.iterdir() if (p / "pyproject.toml").exists())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _siblings(name: str, extras: list[str]) -> list[str]:
    """Every local package ``name`` needs (itself included), through dependencies and extras."""
    local, seen, todo = set(_local()), [], [(name, extras)]
    while todo:
        current, current_extras = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        project = _pyproject(current)["project"]
        requirements = list(project.get("dependencies", []))
        for extra in current_extras:
            requirements += project.get("optional-dependencies", {}).get(extra, [])
        todo += [(_requirement_name(r), []) for r in requirements if _requirement_name(r) in local]
    return seen


def _install(session: nox.Session, name: str, extras: list[str]) -> None:
    siblings = _siblings(name, extras)
    targets = [f"{PACKAGES / name}[{','.join(extras)}]"] + [str(PACKAGES / s) for s in siblings if s != name]
    session.install(*targets)
    check = (
        "import json, sys\nfrom importlib.metadata import distribution\n"
        "bad = [n for n in sys.argv[1:] if 'file://' not in "
        "json.loads(distribution(n).read_text('direct_url.json') or '{}').get('url', '')]\n"
        "sys.exit(f'installed from an index, not this checkout: {bad}' if bad else 0)\n"
    )
    session.run("python", "-c", check, *siblings, silent=True)


@nox.session(python=PYTHONS)
@nox.parametrize("package", _local())
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests with only it and its declared dependencies installed."""
    _install(session, package, TEST_EXTRAS.get(package, ["test"]))
    session.run("pytest", str(PACKAGES / package / "tests"), *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff lint and format check over everything; mypy on every package, strict on jitr-core."""
    session.install("ruff>=0.6", "mypy>=1.10")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    names = _local()
    session.install(*[f"{PACKAGES / n}[test]" for n in names])
    session.run("mypy", "--strict", str(PACKAGES / "jitr-core" / "src"))
    for name in names:
        if name != "jitr-core":
            session.run("mypy", str(PACKAGES / name / "src"))


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """Measure the performance targets of DESIGN.md §8 and print one JSON report."""
    session.install(*[str(PACKAGES / n) for n in _local()], "pytest")
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)
