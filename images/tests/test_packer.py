"""The Packer templates: formatted, valid for the Packer these machines install, variables documented.

Debian's packer (1.6.6) bundles the amazon-ebs and googlecompute builders and predates
``required_plugins``: ``plugins.pkr.hcl`` is left out of the offline check, and so are the
builder options newer than 1.6.6 (``NEWER_OPTIONS``); docs/images.md lists both.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from jitr_core.runner_checksums import RUNNER_SHA256
from jitr_core.testing.environment import require_tool

PACKER_DIR = Path(__file__).resolve().parents[1] / "packer"
PLUGINS_FILE = "plugins.pkr.hcl"
# Options the newest amazon plugin knows and Packer 1.6.6 rejects (blocks, removed for the offline check).
NEWER_OPTIONS = ("metadata_options",)


def offline_copy(tmp_path: Path) -> Path:
    """The templates without the plugin requirements and the options 1.6.6 does not know."""
    target = tmp_path / "packer"
    shutil.copytree(PACKER_DIR, target, ignore=shutil.ignore_patterns(PLUGINS_FILE, "packer-manifest.json"))
    for template in target.glob("*.pkr.hcl"):
        text = template.read_text()
        for block in NEWER_OPTIONS:
            text = re.sub(rf"\n  {block} \{{.*?\n  \}}\n", "\n", text, flags=re.S)
        template.write_text(text)
    return target


def packer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("packer", "apt-get install packer")
    return subprocess.run(
        [binary, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_the_templates_are_formatted() -> None:
    result = packer("fmt", "-check", "-diff", ".", cwd=PACKER_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("arch", ["x64", "arm64"])
@pytest.mark.parametrize("source", ["amazon-ebs.al2023", "googlecompute.ubuntu"])
def test_each_source_validates(tmp_path: Path, source: str, arch: str) -> None:
    result = packer("validate", f"-only={source}", "-var", f"arch={arch}", ".", cwd=offline_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("arch", "amd64", "The arch must be x64 or arm64."),
        ("runner_version", "latest", "The runner_version must look like 2.336.0."),
        ("aws_subnet_id", "vpc-123", "The aws_subnet_id must be empty or a subnet id"),
        ("gcp_zone", "europe-west4", "The gcp_zone must be a zone name"),
    ],
)
def test_a_bad_variable_is_refused_with_its_message(tmp_path: Path, variable: str, value: str, message: str) -> None:
    result = packer("validate", "-var", f"{variable}={value}", ".", cwd=offline_copy(tmp_path))
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split())


def test_every_variable_has_a_description() -> None:
    text = (PACKER_DIR / "variables.pkr.hcl").read_text()
    blocks = re.findall(r'^variable "(\w+)" \{(.*?)^\}', text, flags=re.S | re.M)
    assert {name for name, _ in blocks} >= {"arch", "runner_version", "aws_region", "gcp_project_id", "public", "tags"}
    assert [name for name, body in blocks if "description" not in body] == []


def test_only_the_plugins_file_requires_plugins() -> None:
    plugins = (PACKER_DIR / PLUGINS_FILE).read_text()
    assert '"github.com/hashicorp/amazon"' in plugins and '"github.com/hashicorp/googlecompute"' in plugins
    others = [p for p in PACKER_DIR.glob("*.pkr.hcl") if p.name != PLUGINS_FILE]
    assert [p.name for p in others if "required_plugins" in p.read_text()] == []


def test_the_image_pins_the_same_runner_checksums_as_the_startup_script() -> None:
    lines = (PACKER_DIR / "runner-checksums.txt").read_text().splitlines()
    table = {(v, a): s for v, a, s in (line.split() for line in lines if line and not line.startswith("#"))}
    assert table == dict(RUNNER_SHA256)
