"""``jitr --version``: every installed jitr distribution and third-party plugin, with its version.

One line each, ``name version``: jitr's own distributions first (core, github, functions, aws,
gcp, those installed), then every other distribution that ships a ``jitr`` plugin entry point.
Reading package metadata imports no plugin.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

from jitr_core.plugins import ENTRY_POINT_GROUP

JITR_DISTRIBUTIONS = ("jitr-core", "jitr-github", "jitr-functions", "jitr-aws", "jitr-gcp")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> list[tuple[str, str]]:
    """``(distribution, version)`` of jitr's installed distributions, then of each plugin distribution."""
    found: list[tuple[str, str]] = []
    for name in JITR_DISTRIBUTIONS:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            continue
    seen = {_canonical(name) for name, _ in found}
    plugins: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and _canonical(ep.dist.name) not in seen:
            plugins.setdefault(_canonical(ep.dist.name), (ep.dist.name, ep.dist.version))
    return found + [plugins[key] for key in sorted(plugins)]


class VersionAction(argparse.Action):
    """``--version``: print the versions and exit, like argparse's own version action."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the versions of jitr and of its installed plugins, and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write("".join(f"{name} {found}\n" for name, found in installed_versions()))
        sys.stdout.flush()
        parser.exit()
