"""The rules the GitHub workflows keep (docs/release.md, "The workflows") that neither actionlint
nor zizmor states exactly: actions pinned by full SHA with the release in a comment, no default
permissions, each job's own, checkouts without credentials, and release tags the release
script understands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from release_support import ROOT

yaml = pytest.importorskip("yaml")

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text())
    return document


def test_there_are_the_four_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml", "images.yml", "iac.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_sha_with_its_release(workflow: Path) -> None:
    for number, line in enumerate(workflow.read_text().splitlines(), 1):
        match = USES.match(line)
        if match is None or match["ref"].startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match["ref"]), f"{workflow.name}:{number}: {line}"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", match["comment"]), f"{workflow.name}:{number}: no # vX.Y.Z"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_default_permissions_each_job_its_own_and_no_persisted_credentials(workflow: Path) -> None:
    document = load(workflow)
    assert document["permissions"] == {}
    for name, job in document["jobs"].items():
        assert "permissions" in job, f"{workflow.name}: job {name} has no permissions:"
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{workflow.name}: job {name}"


def test_the_release_workflow_runs_on_package_tags_the_script_reads() -> None:
    document = load(ROOT / ".github" / "workflows" / "release.yml")
    # PyYAML reads the key "on" as True.
    assert document[True] == {"push": {"tags": ["jitr-*-v*"]}}
    script = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "scripts/check_changelog.py --tag" in script and "nox -s release-check" in script
