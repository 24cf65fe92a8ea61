"""The installed ``jitr`` plugins by distribution, and what ``--exclude-plugin`` names.

Both bundles take the same names: the distribution a user pip-installed (``jitr-aws``), or the
plugin's own name as ``jitr plugins`` lists it (its entry point, ``aws``). Names are compared the
way pip compares them, so case and ``-``, ``_``, ``.`` do not matter. A distribution name wins
over a plugin name; a plugin name shipped by several distributions is an error, and so is
leaving out a distribution the bundle cannot work without.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import jitr_core
import pluggy
from jitr_core.errors import JitrError
from jitr_core.plugins import ENTRY_POINT_GROUP


def canonical(name: str) -> str:
    """``name`` normalised as pip does (PEP 503), so ``Jitr_AWS`` and ``jitr-aws`` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_plugins() -> dict[str, frozenset[str]]:
    """Canonical name of every distribution that registers ``jitr`` plugins → its plugins' names."""
    found: dict[str, set[str]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:
            found.setdefault(canonical(ep.dist.name), set()).add(canonical(ep.name))
    return {dist: frozenset(names) for dist, names in found.items()}


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What ``--exclude-plugin`` names resolved to."""

    distributions: frozenset[str]  # canonical names of the distributions to leave out
    unknown: tuple[str, ...]  # names, as given, that no installed plugin answers to


def resolve_exclusions(
    names: Iterable[str],
    required: Iterable[str] = (),
    plugins: Mapping[str, frozenset[str]] | None = None,
) -> Exclusions:
    """The plugin distributions ``names`` designate, by distribution name first, then by plugin name."""
    plugins = installed_plugins() if plugins is None else plugins
    needed = {canonical(name) for name in required}
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        key = canonical(name)
        matches = [key] if key in plugins else sorted(dist for dist, eps in plugins.items() if key in eps)
        if not matches:
            unknown.append(name)
            continue
        if len(matches) > 1:
            raise JitrError(
                f"--exclude-plugin {name}: several distributions ship a plugin of that name "
                f"({', '.join(matches)}); give the distribution's name"
            )
        if matches[0] in needed:
            raise JitrError(f"--exclude-plugin {name}: {matches[0]} cannot be left out of this bundle")
        chosen.add(matches[0])
    return Exclusions(frozenset(chosen), tuple(unknown))


def warn_unknown(names: Iterable[str], required: Iterable[str] = ()) -> None:
    """Say on stderr which names match no installed plugin: a typo must not pass unnoticed."""
    plugins = installed_plugins()
    unknown = resolve_exclusions(names, required, plugins).unknown
    if not unknown:
        return
    listed = ", ".join(f"{dist} ({', '.join(sorted(eps))})" for dist, eps in sorted(plugins.items())) or "none"
    for name in unknown:
        print(
            f"jitr: warning: --exclude-plugin {name}: no installed jitr plugin has that name; installed: {listed}",
            file=sys.stderr,
        )


_PROBE = """
import json, sys
from importlib import metadata
paths, fallback, group = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
sys.path[:0] = paths
failed, bundled = {}, {}
for ep in (ep for dist in metadata.distributions(path=paths[:1]) for ep in dist.entry_points.select(group=group)):
    if ep.name in bundled:
        continue
    bundled[ep.name] = ep.value
    try:
        ep.load()
    except BaseException as exc:
        failed[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
if not failed:
    # then registered as at a cold start, by jitr_core's own registry (the bundle's, else this one's):
    # a hook jitr does not know, a parameter its hook does not have, a name taken make a plugin broken
    sys.path.extend(fallback)
    from jitr_core.plugins import DEFAULT_PLUGINS, create_plugin_manager
    others = {ep.name for ep in metadata.entry_points(group=group)} - set(bundled)
    others -= {name for name, _ in DEFAULT_PLUGINS}
    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": ",".join(sorted(others))})
    for name, broken in pm.broken.items():
        failed[name] = f"{bundled.get(name, name)}: {' '.join(broken.error.split())}"
print(json.dumps({"loaded": sorted(set(bundled) - set(failed)), "failed": failed}))
"""


def _registry_paths() -> list[str]:
    """Where ``jitr_core`` and ``pluggy`` are installed here, for a bundle that holds neither."""
    roots = (Path(jitr_core.__file__).parent.parent, Path(pluggy.__file__).parent.parent)
    return [str(root) for root in dict.fromkeys(roots)]


def verify_plugins(paths: Sequence[Path], python: str | None = None) -> tuple[str, ...]:
    """Load and register every ``jitr`` plugin the bundle holds as a deployed function would; the names loaded.

    The bundle is ``paths[0]``; the other paths only supply what its plugins import (the GCP
    bundle's pinned libraries as installed here), so a plugin installed here but left out of the
    bundle is not checked. A fresh interpreter sees ``paths`` and the standard library only (no
    site-packages, no ``.pth`` files), so a plugin works here only if the bundle's layout holds all
    it imports. Once every plugin imports, jitr's plugin manager is built as at a cold start
    (:func:`jitr_core.plugins.create_plugin_manager`, from the bundle's ``jitr_core``), so a plugin
    that imports but cannot be registered (a hook jitr does not know, a parameter its hook does
    not have) is broken here as it would be in every deployed function.
    One that fails is a :class:`JitrError` naming it and the reason: a bundle is never built around it.
    """
    listed = json.dumps([str(p) for p in paths])
    command = [python or sys.executable, "-I", "-S", "-B", "-c", _PROBE, listed, json.dumps(_registry_paths())]
    try:
        done = subprocess.run([*command, ENTRY_POINT_GROUP], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JitrError(f"could not load the bundled plugins to check them: {exc}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise JitrError(f"could not load the bundled plugins to check them (exit {done.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if result["failed"]:
        broken = "; ".join(f"plugin {name!r} ({error})" for name, error in sorted(result["failed"].items()))
        raise JitrError(
            f"a bundled plugin fails to load or register, so no bundle is written: {broken}; "
            "fix it, or leave it out with --exclude-plugin NAME"
        )
    return tuple(result["loaded"])
