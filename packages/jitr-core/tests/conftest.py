"""Shared fixtures of jitr-core's tests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings

# -- embedded backend -------------------------------------------------------------------------

EMBEDDED_PRELUDE = """
import json, sys
from jitr_core.backend import Backend
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
backend = Backend(
    create_plugin_manager(load_entry_points=False, environ={}),
    Settings.from_mapping({"provider": "embedded", "embedded": json.loads(sys.argv[1])}),
)
"""


@pytest.fixture
def embedded_section(tmp_path: Path) -> dict[str, Any]:
    """The ``[embedded]`` table of the tests: a fresh state dir, 3 receives, a short kill grace."""
    return {"state_dir": str(tmp_path / "state"), "max_receive_count": 3, "terminate_grace_s": 2}


@pytest.fixture
def make_embedded_backend(embedded_section: dict[str, Any]) -> Iterator[Callable[..., Backend]]:
    """Build embedded backends (extra ``[embedded]`` keys as arguments); their VMs are killed afterwards."""
    made: list[Backend] = []

    def make(**extra: Any) -> Backend:
        settings = Settings.from_mapping({"provider": "embedded", "embedded": {**embedded_section, **extra}})
        backend = Backend(create_plugin_manager(load_entry_points=False, environ={}), settings)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        for vm in backend.list_vms():
            if vm.running:
                backend.terminate_vm(vm.vm_id)


@pytest.fixture
def embedded_backend(make_embedded_backend: Callable[..., Backend]) -> Backend:
    return make_embedded_backend()


@pytest.fixture
def run_embedded_python(embedded_section: dict[str, Any]) -> Callable[..., subprocess.Popen[str]]:
    """Start another Python process on the same state dir; ``backend`` is defined for ``code``."""

    def run(code: str, *args: str) -> subprocess.Popen[str]:
        source = EMBEDDED_PRELUDE + textwrap.dedent(code)
        return subprocess.Popen(
            [sys.executable, "-c", source, json.dumps(embedded_section), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return run
