"""Secret values: a wrapper that keeps them out of reprs and logs, and the local reference reader."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SecretNotFoundError, SettingsError


class Secret:
    """Holds a secret string; ``str()``/``repr()`` show a placeholder, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def read_local_secret(name: str, reference: str) -> str:
    """Read a secret from ``env:VARIABLE`` or ``file:/path``; errors name the place, never a value."""
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
        f"secret {name!r} needs a reference of the form env:VARIABLE or file:/path "
        f"(see [secrets] / JITR_SECRETS_{name.upper()})"
    )
