"""``jitr bundle aws`` bytecode: compiled reproducibly by the target interpreter, or left out with a warning.

pip and the plugin check are replaced by fakes here: the real build is exercised by test_aws_bundle.py.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from jitr_functions import bundle_aws, cli

THIS = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip "installs" one module; the plugin check passes; nothing is pruned."""

    def pip(*args: str) -> None:
        target = Path(args[args.index("--target") + 1])
        (target / "pkg").mkdir(parents=True)
        (target / "pkg" / "__init__.py").write_text("VALUE = 1\n")
        (target / "pkg" / "mod.py").write_text("def f():\n    return 2\n")

    monkeypatch.setattr(bundle_aws, "bundled_distributions", lambda exclude=(): ("jitr-core",))
    monkeypatch.setattr(bundle_aws, "pinned_dependencies", lambda names: ())
    monkeypatch.setattr(bundle_aws, "_requirements", lambda names, wheels: [])
    monkeypatch.setattr(bundle_aws, "_pip", pip)
    monkeypatch.setattr(bundle_aws, "_prune", lambda target, roots: None)
    monkeypatch.setattr(bundle_aws, "verify_plugins", lambda paths, python=None: ())
    monkeypatch.setattr(bundle_aws, "RUNTIMES", (*bundle_aws.RUNTIMES, THIS))


def pycs(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if name.endswith(".pyc")}


def test_two_builds_write_the_same_bytecode_for_the_target_version(fake_build: None, tmp_path: Path) -> None:
    first = bundle_aws.build(tmp_path / "a.zip", python=THIS)
    second = bundle_aws.build(tmp_path / "b.zip", python=THIS)

    assert first.bytecode == sys.executable
    assert first.path.read_bytes() == second.path.read_bytes()
    tag = sys.implementation.cache_tag
    assert sorted(pycs(first.path)) == [f"pkg/__pycache__/__init__.{tag}.pyc", f"pkg/__pycache__/mod.{tag}.pyc"]
    code = pycs(first.path)[f"pkg/__pycache__/mod.{tag}.pyc"]
    assert int.from_bytes(code[4:8], "little") == 0b01  # unchecked-hash
    assert b"/var/task/pkg/mod.py" in code  # tracebacks name the path Lambda unpacks to, not the build's


def test_without_the_target_interpreter_the_zip_has_no_bytecode_and_a_warning_says_so(
    fake_build: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bundle_aws, "_target_interpreter", lambda python: None)

    bundle = bundle_aws.build(tmp_path / "a.zip", python=THIS)

    assert bundle.bytecode is None and pycs(bundle.path) == {}
    err = capsys.readouterr().err
    assert f"python{THIS} is not on the PATH" in err and "--no-compile" in err


def test_no_compile_leaves_bytecode_out_without_a_warning(
    fake_build: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    called: list[Any] = []
    monkeypatch.setattr(bundle_aws, "compile_bytecode", lambda *args: called.append(args))
    monkeypatch.setattr(bundle_aws, "_interpreter", lambda python: sys.executable)

    args = cli.parser().parse_args(["bundle", "aws", "--no-compile", "--out", str(tmp_path / "a.zip")])
    args.python = THIS

    assert bundle_aws.run(args) == 0
    out, err = capsys.readouterr()
    assert called == [] and "warning" not in err
    assert "bytecode: none" in out and pycs(tmp_path / "a.zip") == {}


def test_a_file_the_target_cannot_compile_stops_the_build(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n")

    with pytest.raises(bundle_aws.BundleError, match="compiling the bundle's bytecode failed"):
        bundle_aws.compile_bytecode(tmp_path, sys.executable)
