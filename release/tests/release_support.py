"""Helpers for the release tests: the built artifacts, fresh venvs, and where an install came from.

The artifacts are the sdists and wheels ``nox -s release-check`` built once, in
``JITR_RELEASE_DIST`` (the five packages) and ``JITR_RELEASE_PLUGINS`` (the third-party example
plugin); run on their own, the tests build them into a temporary directory first.

Every install goes into a fresh venv, runs from a temporary working directory with no
``PYTHONPATH``, and takes the jitr packages from those directories (``--find-links``) and
everything else from the package index. An index could serve a distribution of the same name, so
after each install every jitr distribution's files are compared, by the hashes in its RECORD,
with the wheel of that name and version in the directories: a package taken from anywhere else
fails the test.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from jitr_core.testing.environment import require_tool, unavailable
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jitr-core", "jitr-github", "jitr-aws", "jitr-gcp", "jitr-functions")
PLUGIN = ROOT / "examples" / "jitr-docker-mirror"
# What an installer prints when the index cannot be reached (uv, then pip).
NETWORK_FAILURES = (
    "Failed to fetch",
    "error sending request",
    "dns error",
    "Could not connect",
    "No matching distribution",
    "Could not find a version",
    "NewConnectionError",
    "Temporary failure",
)


@dataclass(frozen=True)
class Artifacts:
    dist: Path  # the five packages' sdists and wheels: the local package index
    plugins: Path  # the third-party plugin's, built the same way

    @property
    def find_links(self) -> tuple[Path, ...]:
        return (self.dist, self.plugins)

    def wheel(self, name: str, version: str | None = None) -> Path:
        """The wheel of distribution ``name`` (at ``version``) in the find-links directories."""
        found = [
            wheel
            for directory in self.find_links
            for wheel in directory.glob("*.whl")
            if parse_wheel_filename(wheel.name)[0] == canonicalize_name(name)
            and (version is None or str(parse_wheel_filename(wheel.name)[1]) == version)
        ]
        assert len(found) == 1, f"expected one wheel of {name} {version or ''} in {self.find_links}, found {found}"
        return found[0]

    @property
    def names(self) -> list[str]:
        """Every distribution the directories hold."""
        wheels = [wheel for directory in self.find_links for wheel in directory.glob("*.whl")]
        return sorted({str(parse_wheel_filename(wheel.name)[0]) for wheel in wheels})

    def version(self, name: str) -> str:
        return str(parse_wheel_filename(self.wheel(name).name)[1])


def build(sources: Iterable[Path], out: Path) -> Path:
    """``uv build`` (an sdist, then a wheel from it) of every source directory into ``out``."""
    uv = require_tool("uv", "pip install uv")
    for source in sources:
        subprocess.run([uv, "build", "--quiet", "--out-dir", str(out), str(source)], check=True, timeout=300)
    return out


def artifacts(tmp: Path) -> Artifacts:
    dist, plugins = os.environ.get("JITR_RELEASE_DIST"), os.environ.get("JITR_RELEASE_PLUGINS")
    if dist and plugins:
        return Artifacts(Path(dist), Path(plugins))
    return Artifacts(
        build([ROOT / "packages" / name for name in PACKAGES], tmp / "dist"), build([PLUGIN], tmp / "plugins")
    )


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without anything that would put a checkout or another venv on the path."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Venv:
    path: Path
    cwd: Path  # an empty directory: nothing of the checkout is importable from it

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def site_packages(self) -> Path:
        (found,) = self.path.glob("lib/python3.*/site-packages")
        return found

    def run(
        self, command: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this venv from its empty working directory."""
        environment = clean_env(env)
        environment["PATH"] = os.pathsep.join([str(self.bin), environment.get("PATH", "")])
        return subprocess.run(
            [str(self.bin / command), *args],
            cwd=self.cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def fresh_venv(tmp: Path, found: Artifacts, *requirements: str) -> Venv:
    """A new venv holding ``requirements``, the jitr ones from the artifacts only; checks where they came from."""
    uv = require_tool("uv", "pip install uv")
    venv = Venv(tmp / "venv", tmp / "cwd")
    venv.cwd.mkdir(parents=True)
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv.path)], check=True, cwd=venv.cwd)
    links = [arg for directory in found.find_links for arg in ("--find-links", str(directory))]
    # uv's cache may hold an older build of the same name and version (a rebuild keeps the version):
    # the jitr packages are read from the directories afresh.
    refresh = [arg for name in found.names for arg in ("--refresh-package", name)]
    command = [uv, "pip", "install", "--python", str(venv.bin / "python"), *links, *refresh, *requirements]
    done = subprocess.run(command, cwd=venv.cwd, env=clean_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and any(failure in done.stderr for failure in NETWORK_FAILURES):
        unavailable(f"the package index is unreachable for third-party dependencies: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    assert_from_artifacts(installed_jitr(venv.site_packages), found)
    return venv


def installed_jitr(path: Path) -> dict[str, metadata.Distribution]:
    """The jitr distributions installed under ``path`` (a site-packages or a bundle), by canonical name."""
    found = {}
    for dist in metadata.distributions(path=[str(path)]):
        name = canonicalize_name(dist.metadata["Name"])
        if name.startswith("jitr"):
            found[str(name)] = dist
    return found


def record(text: str) -> dict[str, str]:
    """A RECORD's ``path -> hash`` (entries without a hash, such as RECORD itself, left out)."""
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) >= 2 and row[1]}


def wheel_record(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        return record(archive.read(name).decode())


def file_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def assert_from_artifacts(installed: Mapping[str, metadata.Distribution], found: Artifacts) -> None:
    """Every installed jitr distribution is, file for file, the wheel of its name and version in the artifacts."""
    assert installed, "no jitr distribution installed"
    for name, dist in installed.items():
        wheel = found.wheel(name, dist.version)
        expected = wheel_record(wheel)
        base = Path(str(dist.locate_file("")))
        for relative, digest in expected.items():
            if "/direct_url.json" in relative or relative.startswith(f"{wheel.name.split('-')[0]}.data/scripts/"):
                continue
            path = base / relative
            assert path.exists(), f"{name} {dist.version}: {relative} is missing: not installed from {wheel}"
            assert file_hash(path) == digest, f"{name} {dist.version}: {relative} differs from {wheel}"


def plugins(venv: Venv) -> dict[str, dict[str, Any]]:
    """``jitr plugins --json`` of the venv, by plugin name."""
    done = venv.run("jitr", "plugins", "--json")
    assert done.returncode == 0, done.stderr
    return {plugin["name"]: plugin for plugin in json.loads(done.stdout)}


def imported_from(venv: Venv, *modules: str) -> list[str]:
    """Where the venv's Python imports ``modules`` from, run from its empty working directory."""
    code = "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    done = venv.run("python", "-c", code, *modules)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
