"""``jitr bundle aws``: one deterministic Lambda zip holding jitr, its plugins and their dependencies.

pip installs, for the Lambda platform (manylinux wheels, the runtime's Python), the jitr packages
and every installed ``jitr`` plugin distribution; local checkouts are built into wheels first.
The ``*.dist-info`` directories stay: entry points are how the functions find their plugins.
boto3 and what only it needs are left out by default (the Lambda runtime provides them).
Third-party libraries are pinned to the versions installed here, as the Cloud Run bundle pins
them, so two builds from one environment are the same whatever PyPI has published since; every
bundled plugin is loaded from the unpacked bundle before the zip is written.

Lambda unpacks the zip into the read-only ``/var/task``, where Python cannot cache bytecode: a zip
without it compiles every module a cold start imports, on every cold start. The bundle is
compiled by the target runtime's interpreter (``python3.12``/``python3.13`` on the ``PATH``)
into hash-based ``.pyc`` files (``unchecked-hash``: no timestamps, so two builds give the same
bytes, and the runtime loads them without reading the source again). Without that interpreter
the zip is written without bytecode, and a warning says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from jitr_core.errors import JitrError

from .bundle_plugins import canonical, installed_plugins, resolve_exclusions, verify_plugins, warn_unknown

FUNCTIONS = ("webhook", "scaleup", "lifecycle", "scaledown", "rebalancer", "broker")
HANDLERS = tuple(f"jitr_functions.aws.{name}" for name in FUNCTIONS)
RUNTIMES = ("3.12", "3.13")
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
SIZE_TARGET = 8 * 1024 * 1024
DEFAULT_ZIP = "jitr-aws-lambda.zip"
JITR_DISTRIBUTIONS = ("jitr-core", "jitr-github", "jitr-functions", "jitr-aws")
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
OTHER_CLOUDS = frozenset({"jitr-gcp"})  # another cloud's backend is dead weight in a Lambda
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the zip: the source paths tracebacks show
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class BundleError(JitrError):
    """The bundle could not be built (pip failed, a package is missing)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    distributions: tuple[str, ...]
    bytecode: str | None = None  # the interpreter that compiled the zip's bytecode; None: no bytecode


def build(
    out: Path,
    python: str = "3.12",
    arch: str = "x86_64",
    include_boto3: bool = False,
    exclude_plugins: Iterable[str] = (),
    precompile: bool = True,
) -> Bundle:
    """Build the zip at ``out`` for Lambda's ``python`` runtime on ``arch``.

    With ``precompile``, the zip carries bytecode for ``python`` when its interpreter is on the
    ``PATH`` (:attr:`Bundle.bytecode` names it), else none and a warning is printed.
    """
    if python not in RUNTIMES or arch not in PLATFORMS:
        raise BundleError(
            f"Lambda runtimes are python{'/'.join(RUNTIMES)} on {'/'.join(PLATFORMS)}, found python{python} on {arch}"
        )
    names = bundled_distributions(exclude_plugins)
    with tempfile.TemporaryDirectory(prefix="jitr-bundle-") as tmp:
        wheels, target, constraints = Path(tmp, "wheels"), Path(tmp, "target"), Path(tmp, "constraints.txt")
        requirements = _requirements(names, wheels)
        constraints.write_text("".join(f"{pin}\n" for pin in pinned_dependencies(names)))
        _pip(
            "install",
            "--target",
            str(target),
            "--platform",
            PLATFORMS[arch],
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            "--no-compile",
            "--constraint",
            str(constraints),
            *requirements,
        )
        if not include_boto3:
            _prune(target, roots=names)
        _tidy(target)
        verify_plugins([target], python=_interpreter(python))
        bytecode = None
        if precompile:
            bytecode = _target_interpreter(python)
            if bytecode is None:
                print(
                    f"jitr: warning: python{python} is not on the PATH, so the zip carries no bytecode and every "
                    f"cold start compiles what it imports; install python{python} to add it, "
                    "or pass --no-compile to build without it",
                    file=sys.stderr,
                )
            else:
                compile_bytecode(target, bytecode)
        unzipped = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        out = write_zip(target, out)
        installed = sorted(f"{d.metadata['Name']} {d.version}" for d in metadata.distributions(path=[str(target)]))
    return Bundle(out, out.stat().st_size, unzipped, tuple(installed), bytecode)


def bundled_distributions(exclude_plugins: Iterable[str] = ()) -> tuple[str, ...]:
    """jitr's own distributions, then those shipping the installed plugins (minus excluded and other clouds).

    ``exclude_plugins`` are distribution or plugin names (see :mod:`.bundle_plugins`); jitr's own
    distributions cannot be left out, the functions need them.
    """
    excluded = resolve_exclusions(exclude_plugins, required=JITR_DISTRIBUTIONS).distributions
    names = list(JITR_DISTRIBUTIONS)
    for dist in sorted(installed_plugins()):
        if dist not in names and dist not in OTHER_CLOUDS and dist not in excluded:
            names.append(dist)
    return tuple(names)


def pinned_dependencies(names: Iterable[str]) -> tuple[str, ...]:
    """``name==version`` of every installed third-party library ``names`` need, directly or not.

    jitr's own distributions and the bundled plugins are left out (they are built from here or
    named exactly); so is what only an extra or an uninstalled requirement would bring.
    """
    roots = {canonical(name) for name in names}
    found: dict[str, str] = {}
    todo = sorted(roots)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name not in roots:
            found[name] = f"{dist.metadata['Name']}=={dist.version}"
        todo.extend(_needs(dist))
    return tuple(found[name] for name in sorted(found))


def _needs(dist: metadata.Distribution) -> Iterator[str]:
    """The canonical names of what ``dist`` requires outside its extras."""
    for requirement in dist.requires or ():
        match = _NAME.match(requirement)
        if match and "extra" not in requirement.partition(";")[2]:
            yield canonical(match.group(1))


def _interpreter(python: str) -> str:
    """A working ``python3.12``/``python3.13`` to load the bundle with, else this interpreter."""
    return _target_interpreter(python) or sys.executable


def _target_interpreter(python: str) -> str | None:
    """A working ``python3.12``/``python3.13`` on the ``PATH`` (this one if it is that version), else None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    candidate = shutil.which(f"python{python}")
    if candidate is None:
        return None
    probe = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version, _, executable = done.stdout.strip().partition("\n")
    if done.returncode != 0 or version != python:
        return None
    return executable or candidate  # the interpreter itself, not a shim (pyenv's) in front of it


def compile_bytecode(target: Path, python: str) -> None:
    """Compile every module under ``target`` with ``python`` into reproducible ``__pycache__/*.pyc`` files.

    ``unchecked-hash`` pycs hold the source's hash instead of its timestamp and are loaded without
    checking it (the zip never changes under them); the recorded source paths are those Lambda
    unpacks to. One process, in compileall's sorted order, so two builds write the same bytes.
    """
    command = [python, "-I", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
               "-s", str(target), "-p", LAMBDA_TASK_ROOT, str(target)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"could not compile the bundle's bytecode: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise BundleError(f"compiling the bundle's bytecode failed (exit {done.returncode}):\n{tail}")


def _requirements(names: Sequence[str], wheels: Path) -> list[str]:
    """What to hand pip: wheels built from local checkouts, local wheel files, or pinned names."""
    requirements, sources = [], []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            requirements.append(_declared(name))
            continue
        local = _local_path(dist)
        if local is not None and local.is_dir():
            sources.append(str(local))
        elif local is not None and local.suffix == ".whl" and local.is_file():
            requirements.append(str(local))
        else:
            requirements.append(f"{name}=={dist.version}")
    if sources:
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), *sources)
        requirements += sorted(str(p) for p in wheels.glob("*.whl"))
    return requirements


def _local_path(dist: metadata.Distribution) -> Path | None:
    text = dist.read_text("direct_url.json")
    url = urlparse(json.loads(text).get("url", "")) if text else None
    return Path(unquote(url.path)) if url is not None and url.scheme == "file" else None


def _declared(name: str) -> str:
    """The range jitr-functions declares for ``name`` (its ``aws`` extra names jitr-aws), or the bare name."""
    for requirement in metadata.requires("jitr-functions") or ():
        match = _NAME.match(requirement)
        if match and canonical(match.group(1)) == canonical(name):
            return requirement.split(";", 1)[0].strip()
    return name


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BundleError(f"could not run pip: {exc}") from None
    if done.returncode != 0:
        if "No module named pip" in done.stderr:
            raise BundleError("jitr bundle needs pip in this environment (pip install 'jitr-functions[aws]')")
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BundleError(f"pip {args[0]} failed (exit {done.returncode}):\n{tail}")


def _prune(target: Path, roots: Iterable[str]) -> None:
    """Remove boto3, botocore, s3transfer and every distribution only they needed."""
    dists = {canonical(d.metadata["Name"]): d for d in metadata.distributions(path=[str(target)])}
    keep: set[str] = set()
    todo = [canonical(name) for name in roots]
    while todo:
        name = todo.pop()
        if name in keep or name in RUNTIME_PROVIDED or name not in dists:
            continue
        keep.add(name)
        todo.extend(_needs(dists[name]))
    for name, dist in dists.items():
        if name not in keep:
            _remove_distribution(target, dist)


def _remove_distribution(target: Path, dist: metadata.Distribution) -> None:
    root = target.resolve()
    for file in dist.files or ():
        path = (target / file).resolve()
        if path.is_relative_to(root) and path.is_file():
            path.unlink()
    for directory in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def _tidy(target: Path) -> None:
    """Drop what differs between builds or is useless in Lambda: scripts, caches, install-time URLs."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for path in list(target.rglob("__pycache__")):
        shutil.rmtree(path, ignore_errors=True)
    for path in target.glob("*.dist-info/direct_url.json"):
        path.unlink()
        record = path.with_name("RECORD")
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if not line.startswith(f"{path.parent.name}/{path.name},")))


def zip_entry(name: str, executable: bool = False) -> zipfile.ZipInfo:
    """A zip entry that is the same in every build: a fixed timestamp, a normalised mode, deflated."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode above is honoured
    return info


def write_zip(source: Path, out: Path) -> Path:
    """Zip ``source`` reproducibly (sorted entries, a fixed timestamp, normalised modes); the zip's path.

    ``out`` names the zip, or an existing directory to write ``jitr-aws-lambda.zip`` into. The
    zip appears whole or not at all: it is written aside and renamed, and removed on failure.
    """
    if out.is_dir():
        out = out / DEFAULT_ZIP
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted((p for p in source.rglob("*") if p.is_file()), key=lambda p: p.relative_to(source).as_posix())
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in files:
                executable = path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                info = zip_entry(path.relative_to(source).as_posix(), bool(executable))
                archive.writestr(info, path.read_bytes(), compresslevel=9)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_ZIP), help=f"zip to write, or a directory to write {DEFAULT_ZIP} into"
    )
    parser.add_argument("--python", choices=RUNTIMES, default="3.12", help="Lambda runtime's Python version")
    parser.add_argument("--arch", choices=tuple(PLATFORMS), default="x86_64", help="Lambda architecture")
    parser.add_argument("--include-boto3", action="store_true", help="bundle boto3 instead of the runtime's")
    parser.add_argument(
        "--no-compile",
        dest="precompile",
        action="store_false",
        help="leave bytecode out of the zip (by default it is compiled by python3.12/python3.13 when on the PATH)",
    )
    parser.add_argument(
        "--exclude-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out an installed jitr plugin, by distribution (jitr-mirror) or plugin name (mirror); repeatable",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    warn_unknown(args.exclude_plugin, required=JITR_DISTRIBUTIONS)
    bundle = build(args.out, args.python, args.arch, args.include_boto3, args.exclude_plugin, args.precompile)
    mb = bundle.zipped_bytes / 1024 / 1024
    verdict = "within" if bundle.zipped_bytes <= SIZE_TARGET else "OVER"
    print(f"wrote {bundle.path} for python{args.python} on {args.arch}")
    print(
        f"size: {mb:.2f} MB zipped ({verdict} the {SIZE_TARGET // 1024 // 1024} MB target), "
        f"{bundle.unzipped_bytes / 1024 / 1024:.2f} MB unzipped"
    )
    if bundle.bytecode is not None:
        print(f"bytecode: compiled for python{args.python} by {bundle.bytecode} (unchecked-hash)")
    else:
        print("bytecode: none (each cold start compiles what it imports)")
    print(f"contents: {', '.join(bundle.distributions)}")
    print("handlers:")
    for handler in HANDLERS:
        print(f"  {handler}")
    if verdict == "OVER":
        print(f"jitr: warning: the bundle exceeds the {SIZE_TARGET // 1024 // 1024} MB target", file=sys.stderr)
    return 0
