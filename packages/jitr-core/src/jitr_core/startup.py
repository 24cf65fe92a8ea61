"""Startup-script assembly: fragments from every plugin, ordered by phase, joined into one script.

A plugin adds a step (a registry mirror, a cache mount) by returning a :class:`Fragment` from
``jitr_render_startup_script``. Fragments of the ``teardown`` phase form the body of a shell
function that runs on exit and from the lifetime watchdog, so every path ends by deleting the VM.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import JitrError
from .secret import Secret
from .settings import Pool

PHASES = ("prelude", "install", "pre_run", "run", "post_run", "teardown")


@dataclass(frozen=True, slots=True)
class Fragment:
    """Shell text for one phase; lower ``order`` runs first within a phase."""

    phase: str
    body: str
    order: int = 50
    source: str = ""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise JitrError(f"startup-script fragment phase must be one of {PHASES}, found {self.phase!r}")


@dataclass(frozen=True, slots=True)
class ScriptContext:
    """What fragments may use. ``jit_config`` is secret: embed it only via :func:`shell_b64`.

    ``runner_sha256`` pins the runner tarball's digest; empty means the pinned table of
    :mod:`jitr_core.runner_checksums` for ``runner_version`` and the pool's architecture.
    With ``handoff`` ``"broker"`` the script holds no secret: ``jit_config`` is empty and the VM
    pulls its config from ``broker_url`` with its cloud identity, giving up ``broker_deadline_s``
    after the script started.

    ``max_lifetime_s`` bounds the VM from its boot (the script's watchdog, the cloud's own limit).
    A warm VM waits for its job, so its ``max_lifetime_s`` covers the wait and a whole job, and
    ``job_max_lifetime_s`` (0: none) starts the job's own watchdog when the config arrives: the job
    gets the pool's whole lifetime however long the VM waited.
    """

    runner_name: str
    pool: Pool
    provider: str
    jit_config: Secret
    runner_version: str
    max_lifetime_s: int
    env: Mapping[str, str] = field(default_factory=dict)
    runner_sha256: str = ""
    handoff: str = "metadata"
    broker_url: str = ""
    broker_audience: str = ""
    broker_deadline_s: int = 600
    job_max_lifetime_s: int = 0


class ScriptTooLargeError(JitrError):
    """The rendered script exceeds what the cloud accepts as user data / metadata."""


def shell_quote(value: str) -> str:
    """Quote an untrusted value for a POSIX shell."""
    return shlex.quote(value)


def shell_b64(value: str) -> str:
    """An expression that yields ``value`` at run time without the text ever being parsed by the shell."""
    encoded = base64.b64encode(value.encode()).decode()
    return f"\"$(printf %s '{encoded}' | base64 -d)\""


def assemble(fragments: Iterable[Fragment], limit_bytes: int | None = None) -> str:
    """Order fragments by phase and ``order`` and join them into one bash script."""
    by_phase: dict[str, list[Fragment]] = {phase: [] for phase in PHASES}
    for fragment in fragments:
        by_phase[fragment.phase].append(fragment)
    teardown = [f.body.rstrip() for f in sorted(by_phase["teardown"], key=_sort_key)]
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        "",
        "# --- teardown (runs on every exit, a failed prelude step's too, and from the lifetime watchdog)",
        "jitr_teardown() {",
        "  trap - EXIT",
        "  set +eu  # every step runs: one failing, or reading what a later phase would have set, stops none",
        '  echo "jitr: tearing down"',
        *teardown,  # not indented: a here-document's terminator must start its line
        "  :",
        "}",
        "trap jitr_teardown EXIT",
    ]
    for phase in ("prelude", "install", "pre_run", "run", "post_run"):
        lines += _section(phase, by_phase[phase])
    script = "\n".join(lines) + "\n"
    if limit_bytes is not None and len(script.encode()) > limit_bytes:
        raise ScriptTooLargeError(
            f"startup script is {len(script.encode())} bytes; the VM provider accepts at most {limit_bytes}"
        )
    return script


def _sort_key(fragment: Fragment) -> tuple[int, str]:
    return (fragment.order, fragment.source)


def _section(phase: str, fragments: list[Fragment]) -> list[str]:
    if not fragments:
        return []
    out = ["", f"# --- {phase}"]
    for fragment in sorted(fragments, key=_sort_key):
        if fragment.source:
            out.append(f"# from {fragment.source}")
        out.append(fragment.body.rstrip())
    return out
