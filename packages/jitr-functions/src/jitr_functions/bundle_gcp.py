"""``jitr bundle gcp``: a source directory that ``gcloud functions deploy`` takes as it is.

It holds ``main.py`` (the five targets), ``wheels/`` (jitr's own distributions and every
installed ``jitr`` plugin, since they may not be on PyPI) and ``requirements.txt`` naming those
wheels plus pinned versions of everything they need and of functions-framework, as installed here.
Every plugin is loaded from the wheels before anything is written: a broken one stops the build.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from jitr_core.errors import JitrError

from .bundle_aws import zip_entry
from .bundle_plugins import installed_plugins, resolve_exclusions, verify_plugins, warn_unknown

TARGETS = ("webhook", "scaleup", "lifecycle", "scaledown", "rebalancer", "broker")
ROOTS = ("jitr-functions", "functions-framework")
REQUIRED_PLUGINS = ("jitr-gcp",)  # the functions' backend: leaving it out would deploy functions that cannot work
MAIN_PY = f'''"""Cloud Run function targets written by ``jitr bundle gcp``; deploy each with ``--entry-point``.

On Cloud Run the garbage collector is paused from here to the end of the first request of the
worker (``jitr_functions.coldstart``): a faster cold start, and pages the worker shares with the
gunicorn arbiter instead of copying them.
"""

from jitr_functions import coldstart

coldstart.pause()

from jitr_functions.gcp import {", ".join(sorted(TARGETS))}  # noqa: E402

__all__ = {sorted(TARGETS)!r}
'''.replace("'", '"')
_INSTALL_ONLY = frozenset({"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"})


@dataclass(frozen=True, slots=True)
class Bundle:
    """What was written: the directory, the vendored wheels and the pinned requirements."""

    out: Path
    wheels: tuple[Path, ...]
    pins: tuple[str, ...]


def write_bundle(out: Path, exclude: Iterable[str] = ()) -> Bundle:
    """Write ``main.py``, ``wheels/*.whl`` and ``requirements.txt`` into ``out``.

    ``exclude`` are plugin distribution or plugin names (see :mod:`.bundle_plugins`); what only
    an excluded distribution needs is left out with it.
    """
    skip = set(resolve_exclusions(exclude, required=REQUIRED_PLUGINS).distributions)
    plugins = set(installed_plugins())
    roots = [_canonical(name) for name in ROOTS] + sorted(plugins - skip)
    closure = _closure(roots, skip)
    vendored = sorted(
        name
        for name, dist in closure.items()
        if name.startswith("jitr") or name in plugins or _local_source(dist) is not None
    )
    with tempfile.TemporaryDirectory(prefix="jitr-bundle-") as tmp:
        staged = Path(tmp, "wheels")
        staged.mkdir()
        built = [_wheel(closure[name], staged) for name in vendored]
        _verify(built, Path(tmp, "unpacked"))
        wheel_dir = out / "wheels"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        for old in wheel_dir.glob("*.whl"):
            old.unlink()
        wheels = tuple(Path(shutil.copy2(wheel, wheel_dir / wheel.name)) for wheel in built)
    pins = tuple(
        f"{closure[name].metadata['Name']}=={closure[name].version}" for name in sorted(closure) if name not in vendored
    )
    lines = [f"./wheels/{w.name}" for w in wheels] + list(pins)
    header = "# Written by jitr bundle gcp: jitr's wheels, then pinned dependencies as installed there.\n"
    (out / "requirements.txt").write_text(header + "\n".join(lines) + "\n")
    (out / "main.py").write_text(MAIN_PY)
    return Bundle(out, wheels, pins)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory to write the function source into")
    parser.add_argument(
        "--exclude-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out an installed jitr plugin, by distribution (jitr-aws) or plugin name (aws); repeatable",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    warn_unknown(args.exclude_plugin, required=REQUIRED_PLUGINS)
    bundle = write_bundle(args.out, args.exclude_plugin)
    print(f"wrote {bundle.out / 'main.py'} (targets: {', '.join(TARGETS)})")
    for wheel in bundle.wheels:
        print(f"wrote {wheel} ({wheel.stat().st_size / 1024:.0f} KiB)")
    print(f"wrote {bundle.out / 'requirements.txt'} ({len(bundle.wheels)} wheels, {len(bundle.pins)} pinned packages)")
    print(f"deploy: gcloud functions deploy NAME --source {bundle.out} --entry-point TARGET --runtime python312 ...")
    return 0


def _verify(wheels: Iterable[Path], unpacked: Path) -> None:
    """Load every plugin from the vendored wheels, with the pinned libraries as installed here."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
    installed = dict.fromkeys(Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib"))
    verify_plugins([unpacked, *installed])


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _closure(roots: list[str], skip: set[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions reachable from ``roots`` through requirements that apply here."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    pending: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen or name in skip:
            continue
        seen.add((name, extras))
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise JitrError(f"{name} is not installed; install jitr-functions[gcp] before bundling") from None
        found[name] = dist
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                pending.append((_canonical(req.name), frozenset(req.extras)))
    return found


def _local_source(dist: metadata.Distribution) -> Path | None:
    """The source directory a distribution was installed from (editable or not), if any."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    url = urlparse(info.get("url", ""))
    if url.scheme != "file" or "dir_info" not in info:
        return None
    return Path(unquote(url.path))


def _wheel(dist: metadata.Distribution, out: Path) -> Path:
    source = _local_source(dist)
    return _build(source, out) if source is not None else _repack(dist, out)


def _build(source: Path, out: Path) -> Path:
    """Build a wheel from a source tree with its PEP 517 backend (no network when it is installed here)."""
    backend = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]["build-backend"]
    hook = "import importlib, sys; print(importlib.import_module(sys.argv[1]).build_wheel(sys.argv[2]))"
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", hook, backend, tmp], cwd=source, capture_output=True, text=True)
        if done.returncode != 0:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp, str(source)],
                capture_output=True,
                text=True,
            )
        built = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(built) != 1:
            raise JitrError(f"building a wheel from {source} failed: {done.stderr.strip()[-800:]}")
        target = out / built[0].name
        target.write_bytes(built[0].read_bytes())
    return target


def _repack(dist: metadata.Distribution, out: Path) -> Path:
    """Rebuild the wheel of a distribution installed from one, from the files its RECORD lists."""
    files = [f for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts]
    info_dir = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    wheel_meta = dist.read_text("WHEEL")
    if info_dir is None or not wheel_meta:
        raise JitrError(f"{dist.metadata['Name']} has no installed dist-info to rebuild a wheel from")
    tag = next(line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:"))
    name = dist.metadata["Name"].replace("-", "_")
    target = out / f"{name}-{dist.version}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in files:
            if file.parts[0] == info_dir and file.name in _INSTALL_ONLY:
                continue
            data = Path(str(file.locate())).read_bytes()
            wheel.writestr(zip_entry(file.as_posix()), data)  # no build time in the bytes: a rebuild deploys nothing
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([file.as_posix(), f"sha256={digest}", len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        wheel.writestr(zip_entry(f"{info_dir}/RECORD"), record.getvalue())
    return target
