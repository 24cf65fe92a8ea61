"""Plugin discovery costs: importing the plugin loads no Google SDK; publishing loads no Compute client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

from jitr_gcp.testing.emulators import Emulator

_LOADED = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith(('google', 'grpc')))))"


def _modules(code: str, env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_LOADED}"], check=True, capture_output=True, text=True, env=env
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_entry_point_names_the_plugin_module() -> None:
    [ep] = [ep for ep in entry_points(group="jitr") if ep.name == "gcp"]
    assert ep.value == "jitr_gcp.plugin"


def test_importing_the_plugin_imports_no_google_library() -> None:
    # An interpreter may start with the empty ``google`` namespace packages (``*-nspkg.pth``): compare to that.
    assert _modules("import jitr_gcp.plugin") == _modules("pass")


def test_the_webhook_path_never_imports_the_compute_client(pubsub_emulator: Emulator) -> None:
    code = "\n".join(
        [
            "from jitr_core.model import QueueMessage",
            "from jitr_gcp import pubsub",
            "from jitr_gcp.config import gcp_config",
            "from jitr_gcp.testing.backend import gcp_backend, gcp_settings, queue_names",
            "settings = gcp_settings(queue_names())",
            "pubsub.ensure_topology(gcp_config(settings))",
            "assert gcp_backend(settings).enqueue('jobs', QueueMessage('{}'))",
        ]
    )
    loaded = _modules(code, env={**os.environ})
    assert "google.cloud.pubsub_v1" in loaded
    assert not [
        m
        for m in loaded
        if m.startswith(("google.cloud.compute", "google.cloud.firestore", "google.cloud.secretmanager"))
    ]


def test_the_gce_metadata_limit_is_declared_to_core() -> None:
    from jitr_core.backend import Backend
    from jitr_core.plugins import create_plugin_manager
    from jitr_core.settings import Settings

    backend = Backend(create_plugin_manager(environ={}), Settings.from_mapping({"provider": "embedded"}))
    assert backend.user_data_limit("gcp") == 256 * 1024
    assert backend.user_data_limit() is None
