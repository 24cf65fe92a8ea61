"""The built sdists and wheels carry what PyPI shows and pip needs (``twine check --strict``, run by the
session, renders the READMEs)."""

from __future__ import annotations

import re
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser

import pytest
from release_support import PACKAGES, ROOT, Artifacts

trove_classifiers = pytest.importorskip("trove_classifiers")


def wheel_metadata(built: Artifacts, name: str) -> Message:
    wheel = built.wheel(name)
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
        return Parser().parsestr(archive.read(path).decode())


@pytest.mark.parametrize("name", PACKAGES)
def test_the_wheel_metadata_is_complete(built: Artifacts, name: str) -> None:
    project = tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"]
    meta = wheel_metadata(built, name)
    assert meta["Name"] == name and meta["Version"] == project["version"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert str(meta.get_payload()).lstrip().startswith(f"# {name}")
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert {"Homepage", "Repository", "Issues", "Changelog", "Documentation"} <= set(urls), urls
    assert urls["Changelog"].endswith(f"/packages/{name}/CHANGELOG.md")
    classifiers = meta.get_all("Classifier", [])
    assert classifiers and not set(classifiers) - trove_classifiers.classifiers, "unknown classifier"
    python = {c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")}
    assert python == {"3.11", "3.12", "3.13"}
    with zipfile.ZipFile(built.wheel(name)) as archive:
        (license_file,) = [n for n in archive.namelist() if ".dist-info/" in n and n.endswith("/LICENSE")]
        assert "Apache License" in archive.read(license_file).decode()


@pytest.mark.parametrize("name", [*PACKAGES, "jitr-docker-mirror"])
def test_the_sdist_holds_the_sources_readme_and_changelog(built: Artifacts, name: str) -> None:
    version = built.version(name)
    stem = f"{name.replace('-', '_')}-{version}"
    (sdist,) = [p for d in built.find_links for p in d.glob(f"{stem}.tar.gz")]
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {f"{stem}/pyproject.toml", f"{stem}/README.md", f"{stem}/PKG-INFO"} <= names
    assert any(n.startswith(f"{stem}/src/{name.replace('-', '_')}/") for n in names)
    assert f"{stem}/LICENSE" in names
    if name in PACKAGES:
        assert f"{stem}/CHANGELOG.md" in names


REPOSITORY_FILE = re.compile(r"https://github\.com/jitr/jitr/blob/main/([^)#\s]+)")


@pytest.mark.parametrize("name", PACKAGES)
def test_the_readme_links_work_where_the_index_shows_it(name: str) -> None:
    """PyPI renders the README away from the checkout: a relative link there leads nowhere."""
    readme = (ROOT / "packages" / name / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert [t for t in targets if not t.startswith(("https://", "#"))] == []
    missing = [path for path in REPOSITORY_FILE.findall(readme) if not (ROOT / path).exists()]
    assert missing == []
