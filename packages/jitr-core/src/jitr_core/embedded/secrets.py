"""Secrets for one machine: ``env:VAR`` reads an environment variable, ``file:/path`` a file.

Errors name the secret and where it was looked for, never a value; an unrecognised reference is
not echoed either, in case someone pasted the secret itself where its reference belongs.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SecretNotFoundError, SettingsError


def fetch_secret(name: str, reference: str) -> str:
    scheme, _, target = reference.partition(":")
    if scheme == "env" and target:
        value = os.environ.get(target, "")
        if not value:
            raise SecretNotFoundError(f"secret {name!r}: environment variable {target} is not set or is empty")
        return value
    if scheme == "file" and target:
        path = Path(target).expanduser()
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretNotFoundError(f"secret {name!r}: file {path} cannot be read ({type(exc).__name__})") from None
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
        if not value:
            raise SecretNotFoundError(f"secret {name!r}: file {path} is empty")
        return value
    raise SettingsError(
        f"secret {name!r} needs a reference of the form env:VARIABLE or file:/path for the embedded secrets "
        f"provider (see [secrets] / JITR_SECRETS_{name.upper()})"
    )
