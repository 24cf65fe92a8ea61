"""Google's Firestore and Pub/Sub emulators as child processes on free 127.0.0.1 ports.

They come with the Google Cloud CLI (Debian packages ``google-cloud-cli-firestore-emulator`` and
``google-cloud-cli-pubsub-emulator``, Java 17). The launch scripts under
``<sdk>/platform/`` start in one to two seconds, much faster than ``gcloud emulators ... start``.
Each emulator runs in its own process group, so stopping it also stops the JVM the script
started, and the group stops itself when the process that started it dies. The SDK root is
``$CLOUDSDK_ROOT_DIR`` or ``/usr/lib/google-cloud-sdk``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from jitr_core.testing.environment import deadline_s

# name -> (script under <sdk>/platform, arguments after the script; {port} is filled in)
_EMULATORS = {
    "pubsub": ("pubsub-emulator/bin/cloud-pubsub-emulator", ["--host=127.0.0.1", "--port={port}"]),
    "firestore": (
        "cloud-firestore-emulator/cloud_firestore_emulator",
        ["start", "--host=127.0.0.1", "--port={port}"],
    ),
}
# The variable each client library reads to talk to the emulator instead of Google.
ENV_VARS = {"pubsub": "PUBSUB_EMULATOR_HOST", "firestore": "FIRESTORE_EMULATOR_HOST"}
# Runs the launch script and stops its whole process group once our end of its stdin pipe
# closes, so an emulator never outlives a test process that was killed before cleaning up.
_GUARD = """
exec 3<&0
"$@" </dev/null 3<&- &
jitr_emulator=$!
{ read -r _ <&3; kill -TERM 0; } &
exec 3<&-
wait "$jitr_emulator"
"""


class EmulatorUnavailable(RuntimeError):
    """The emulator (or Java) is not installed here."""


class EmulatorFailed(RuntimeError):
    """The emulator is installed but did not become ready."""


def sdk_root() -> Path:
    return Path(os.environ.get("CLOUDSDK_ROOT_DIR", "/usr/lib/google-cloud-sdk"))


def find(name: str) -> Path:
    """The launch script of emulator ``name``; raises EmulatorUnavailable saying what is missing."""
    script = sdk_root() / "platform" / _EMULATORS[name][0]
    if not script.is_file():
        package = f"google-cloud-cli-{name}-emulator"
        raise EmulatorUnavailable(f"the {name} emulator is not installed ({script} missing; install {package})")
    if shutil.which(os.environ.get("JAVA", "java")) is None:
        raise EmulatorUnavailable(f"the {name} emulator needs Java 17 on PATH (or $JAVA)")
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Emulator:
    """One running emulator; ``host`` is what ``*_EMULATOR_HOST`` must be set to.

    ``process`` is None when another process started it and stops it (see :mod:`.shared`).
    """

    name: str
    port: int
    process: subprocess.Popen[bytes] | None
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the emulator's process group (the script and its JVM), wait until all of it has exited,
        then remove its log. The script exits at once, the JVM a moment later: waiting for the
        script alone would leave the JVM running past the test run."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        group = self.process.pid
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                self.process.poll()  # reap the script, our child
                if not group_members(group):
                    self.log_path.unlink(missing_ok=True)
                    return
                time.sleep(0.05)
        raise EmulatorFailed(f"the {self.name} emulator's processes {group_members(group)} did not exit")


def group_members(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (exited ones not yet reaped left out)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return []
    proc = Path("/proc")
    if not proc.is_dir():
        return [group]  # no /proc: trust the signal
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # exited meanwhile
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def start(name: str, timeout_s: float = 90.0, tries: int = 3) -> Emulator:
    """Start emulator ``name`` and wait until it answers HTTP; raises EmulatorUnavailable/EmulatorFailed.

    The port is picked free, then handed to the emulator: another process can take it in between
    (parallel test workers, a second test run), so a start that fails to bind is tried again on
    another port, ``tries`` times in all.
    """
    script = find(name)
    for _ in range(tries - 1):
        try:
            return _start_on_free_port(name, script, timeout_s)
        except _PortTaken:
            continue
    return _start_on_free_port(name, script, timeout_s)


class _PortTaken(EmulatorFailed):
    """The emulator exited because another process took its port first."""


_BIND_FAILURES = ("BindException", "Address already in use")


def _start_on_free_port(name: str, script: Path, timeout_s: float) -> Emulator:
    port = free_port()
    args = [a.format(port=port) for a in _EMULATORS[name][1]]
    log = tempfile.NamedTemporaryFile(prefix=f"jitr-{name}-emulator-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        ["/bin/sh", "-c", _GUARD, f"jitr-{name}-emulator", str(script), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    log.close()
    emulator = Emulator(name, port, process, Path(log.name), {ENV_VARS[name]: f"127.0.0.1:{port}"})
    deadline = time.monotonic() + deadline_s(timeout_s)
    while time.monotonic() < deadline:
        if _answers(emulator.port):
            return emulator
        tail = emulator.log_tail()
        if any(sign in emulator.log_tail(lines=500) for sign in _BIND_FAILURES):  # logged, and it keeps running
            emulator.stop()
            raise _PortTaken(f"the {name} emulator could not bind port {port} (BindException):\n{tail}")
        if process.poll() is not None:
            emulator.stop()
            raise EmulatorFailed(f"the {name} emulator exited with {process.returncode}:\n{tail}")
        time.sleep(0.1)
    tail = emulator.log_tail()
    emulator.stop()
    raise EmulatorFailed(
        f"the {name} emulator did not answer on port {port} within {deadline_s(timeout_s):.0f}s:\n{tail}"
    )


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False
