"""Settings and a :class:`~jitr_core.backend.Backend` that route every role to the GCP plugin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from jitr_core.backend import Backend
from jitr_core.plugins import DEFAULT_PLUGINS, create_plugin_manager
from jitr_core.settings import Settings

from .. import plugin

PROJECT = "jitr-test"


def gcp_settings(gcp: Mapping[str, Any] | None = None, **top: Any) -> Settings:
    """Settings choosing ``gcp`` for every role, with ``[gcp]`` = ``{"project": PROJECT, **gcp}``."""
    return Settings.from_mapping({"provider": "gcp", **top, "gcp": {"project": PROJECT, **(gcp or {})}}, "test")


def gcp_backend(settings: Settings) -> Backend:
    """A backend whose only plugin is jitr_gcp's (core's built-in plugins and entry points left out)."""
    blocked = ",".join(name for name, _ in DEFAULT_PLUGINS)
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": blocked}, extra=[("gcp", plugin)], load_entry_points=False
    )
    return Backend(pm, settings)


def queue_names(suffix: str | None = None) -> dict[str, str]:
    """``[gcp]`` keys naming a fresh set of topics and subscriptions, so tests never share messages."""
    suffix = suffix or uuid.uuid4().hex[:8]
    names: dict[str, str] = {}
    for queue in ("jobs", "lifecycle"):
        names[f"{queue}_topic"] = f"jitr-{queue}-{suffix}"
        names[f"{queue}_subscription"] = f"jitr-{queue}-pull-{suffix}"
        names[f"{queue}_dead_letter_topic"] = f"jitr-{queue}-dl-{suffix}"
        names[f"{queue}_dead_letter_subscription"] = f"jitr-{queue}-dl-{suffix}"
    return names
