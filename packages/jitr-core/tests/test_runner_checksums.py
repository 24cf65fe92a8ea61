"""The runner tarball is pinned: the script carries the digest of the version and architecture it installs."""

from __future__ import annotations

import pytest
from jitr_core import runner_script
from jitr_core.errors import JitrError
from jitr_core.runner_checksums import RUNNER_SHA256, pinned_sha256
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import ScriptContext


def _context(version: str = "2.336.0", arch: str = "x64", sha256: str = "") -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m",), arch=arch)
    return ScriptContext("jitr-linux-1-1", pool, "aws", Secret("e30="), version, 3600, runner_sha256=sha256)


def _script(context: ScriptContext) -> str:
    return "\n".join(f.body for f in runner_script.jitr_render_startup_script(context) or [])


@pytest.mark.parametrize("arch", ["x64", "arm64"])
def test_the_default_runner_version_is_pinned_for_both_architectures(arch: str) -> None:
    version = Settings.from_mapping({}).runner_version
    assert f"export JITR_RUNNER_SHA256={pinned_sha256(version, arch)}" in _script(_context(version, arch))
    assert all(len(digest) == 64 for digest in RUNNER_SHA256.values())


def test_a_version_without_a_pin_is_refused_naming_the_pinned_ones() -> None:
    with pytest.raises(JitrError, match=r"runner version '2\.300\.0' \(x64\) has no pinned SHA-256.*2\.336\.0"):
        _script(_context("2.300.0"))


def test_an_explicit_pin_is_used_and_must_be_a_digest() -> None:
    assert "export JITR_RUNNER_SHA256=" + "a" * 64 in _script(_context("2.300.0", sha256="a" * 64))
    with pytest.raises(JitrError, match="64 lowercase hex digits"):
        _script(_context(sha256="abc; reboot"))
