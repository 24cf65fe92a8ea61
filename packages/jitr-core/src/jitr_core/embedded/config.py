"""The ``[embedded]`` settings (``JITR_EMBEDDED_*``), checked once per distinct section.

Values may come from TOML (typed) or from environment variables (always strings), so numbers
are accepted in both forms. Unknown keys are refused: a typo must not silently fall back to a
default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError

DEFAULT_RUNNER_COMMAND = "./run.sh"  # the runner reads ACTIONS_RUNNER_INPUT_JITCONFIG; argv shows in ps
DATABASE_NAME = "jitr.sqlite3"


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """The embedded backend's settings, validated."""

    state_dir: Path
    max_receive_count: int = 5
    max_vms: int = 64
    runner_command: str = DEFAULT_RUNNER_COMMAND
    terminate_grace_s: int = 10
    launch_grace_s: int = 30
    vm_retention_s: int = 86400

    @property
    def database(self) -> Path:
        return self.state_dir / DATABASE_NAME


# Key -> smallest accepted value, for the whole-number settings.
_NUMBERS = {
    "max_receive_count": 1,
    "max_vms": 0,
    "terminate_grace_s": 0,
    "launch_grace_s": 0,
    "vm_retention_s": 0,
}
_KNOWN = frozenset({"state_dir", "runner_command", *_NUMBERS})


def setting_name(key: str) -> str:
    """How a user spells ``key``, in TOML and in the environment."""
    return f"[embedded] {key} (JITR_EMBEDDED_{key.upper()})"


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/jitr``, or ``~/.local/state/jitr`` (the XDG spec ignores relative values)."""
    xdg = environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "jitr"


def load_config(section: Mapping[str, Any], environ: Mapping[str, str]) -> EmbeddedConfig:
    """Validate the ``[embedded]`` section; ``environ`` supplies the default state directory."""
    unknown = sorted(set(section) - _KNOWN)
    if unknown:
        raise SettingsError(f"{setting_name(unknown[0])} is not an embedded setting; known: {sorted(_KNOWN)}")
    raw_dir = section.get("state_dir")
    if raw_dir is None:
        state_dir = default_state_dir(environ)
    elif isinstance(raw_dir, str) and raw_dir.strip():
        state_dir = Path(raw_dir).expanduser()
    else:
        raise SettingsError(f"{setting_name('state_dir')} must be a directory path, found {raw_dir!r}")
    command = section.get("runner_command", DEFAULT_RUNNER_COMMAND)
    if not isinstance(command, str) or not command.strip():
        raise SettingsError(f"{setting_name('runner_command')} must be a shell command, found {command!r}")
    numbers = {key: _number(section, key, low) for key, low in _NUMBERS.items() if key in section}
    return EmbeddedConfig(state_dir=state_dir.absolute(), runner_command=command, **numbers)


def _number(section: Mapping[str, Any], key: str, low: int) -> int:
    value = section[key]
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SettingsError(f"{setting_name(key)} must be a whole number, found {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{setting_name(key)} must be a whole number, found {value!r}")
    if value < low:
        raise SettingsError(f"{setting_name(key)} must be at least {low}, found {value}")
    return value


def prepare_state_dir(path: Path) -> None:
    """Create the state directory (private to the user) or explain why it cannot be used."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise SettingsError(f"{setting_name('state_dir')} must be a directory, found a file at {path}") from None
    except OSError as exc:
        raise SettingsError(f"{setting_name('state_dir')} {path} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise SettingsError(f"{setting_name('state_dir')} {path} is not readable and writable by this user")
