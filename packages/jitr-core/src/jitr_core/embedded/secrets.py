"""Secrets for one machine: ``env:VAR`` reads an environment variable, ``file:/path`` a file.

The reader and writer live in :mod:`jitr_core.secret`, because the backend facade handles such
references for every secrets provider. Secrets jitr writes for an embedded deployment without
a ``file:`` reference of its own go to :func:`secrets_dir` (``<state_dir>/secrets``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..secret import read_local_secret as fetch_secret
from ..secret import write_local_secret as store_secret
from ..settings import Settings
from .config import load_config

__all__ = ["fetch_secret", "secrets_dir", "store_secret"]


def secrets_dir(settings: Settings, environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded backend keeps the secrets jitr writes: ``secrets`` in its state directory."""
    config = load_config(settings.section("embedded"), os.environ if environ is None else environ)
    return config.state_dir / "secrets"
