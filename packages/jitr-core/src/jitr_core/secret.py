"""Secret values: a wrapper that keeps them out of reprs and logs, and the local reference reader and writer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import BackendError, SecretNotFoundError, SettingsError


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


def write_local_secret(name: str, reference: str, value: Secret) -> bool:
    """Write a secret to a ``file:/path`` reference, readable by its owner only (mode 0600).

    Returns True when the file was created, False when an existing one was replaced. The file is
    replaced atomically, so a reader never sees half a key; missing directories are created with
    mode 0700. An ``env:`` reference cannot be written: the error names it (and never a value).
    """
    scheme, _, target = reference.partition(":")
    if scheme == "env":
        raise SettingsError(
            f"secret {name!r} is read from {reference}, an environment variable, which jitr cannot write; "
            f"point [secrets] {name} (JITR_SECRETS_{name.upper()}) at a file: reference or a secrets manager"
        )
    if scheme != "file" or not target:
        raise SettingsError(f"secret {name!r}: {reference!r} is not a file:/path reference")
    path = Path(target).expanduser()
    text = value.reveal()
    if not text:
        raise SettingsError(f"secret {name!r}: refusing to write an empty value to {path}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not path.exists()
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")  # the reader drops one newline
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise BackendError(f"secret {name!r}: file {path} cannot be written ({type(exc).__name__})") from None
    return created
