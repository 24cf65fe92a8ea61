"""Run a rendered startup script for real: bash in a temporary root, with fakes for the machine.

A :class:`Sandbox` is a directory that stands in for the VM's file system (the script's ``/opt``,
``/etc`` and ``/var/log`` paths are relocated into it) and a ``PATH`` made of recording fakes
(``curl``, ``apt-get``, ``dnf``, ``useradd``, ``id``, ``chown``, ``sudo``, ``systemctl``,
``shutdown``, ``poweroff``, ``aws``, optionally ``docker``) plus links to the real tools a
script needs (bash, coreutils, tar, sha256sum, python3, ...). Nothing else on the host is
reachable by name, so a branch that calls a tool the image does not have fails the test.

``curl`` is the real curl pointed at :class:`FakeCloud`, one HTTP server on 127.0.0.1 that
answers every host the script talks to, by its ``Host`` header: the GitHub release downloads,
the EC2 instance metadata service (IMDSv2 token flow), the GCE metadata server
(``Metadata-Flavor: Google``) and the Compute API's instance delete.

The fake runner tarball's ``run.sh`` records its argv and environment, and leaves the ``_diag``
log of a job run when ``<state>/run.job`` exists (else it exits as a runner that took no job); ``sudo`` passes on only
the variables named by ``--preserve-env``, as sudo does. Every fake appends ``name args`` to
``calls.log``. The ``shutdown`` fake only records: :meth:`Sandbox.run` ends the script's process
group once the teardown has shut down, as the power-off would.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .environment import deadline_s, require_tool, wait_until

REAL_TOOLS = (
    "bash", "sh", "env", "cat", "cp", "mv", "rm", "mkdir", "rmdir", "chmod", "ln", "ls", "tee", "sleep", "date",
    "printf", "echo", "base64", "sha256sum", "tar", "gzip", "sed", "grep", "awk", "head", "tail", "tr", "cut",
    "mktemp", "kill", "dirname", "basename", "touch", "wc", "sort", "uniq", "readlink", "stat", "true", "false",
    "install", "find", "xargs", "python3", "uname", "hostname", "getent",
)  # fmt: skip
RELOCATED = ("opt", "etc", "var/log", "var/lib", "usr/local")
_RELOCATE = re.compile(r"(?<=[\s'\"=(:>])/(" + "|".join(re.escape(p) for p in RELOCATED) + r")(?=/)")

IMDS_HOST = "169.254.169.254"
GCE_METADATA_HOST = "metadata.google.internal"
GITHUB_HOST = "github.com"
COMPUTE_HOST = "compute.googleapis.com"

_RECORD = 'printf \'%s\\n\' "$(basename "$0") $*" >> "$JITR_SANDBOX/calls.log"'

_CURL = """#!/bin/bash
# Real curl, every URL sent to the sandbox's fake cloud (the Host header is kept).
__RECORD__
args=()
for arg in "$@"; do
  case "$arg" in
    http://*|https://*)
      rest="${arg#*://}"
      host="${rest%%/*}"
      args+=(--connect-to "${host}:80:127.0.0.1:${JITR_SANDBOX_PORT}")
      arg="http://${rest}"
      ;;
  esac
  args+=("$arg")
done
exec __CURL__ "${args[@]}"
"""

_SUDO = """#!/bin/bash
# Like sudo: the command runs with a reset environment plus the variables --preserve-env names.
__RECORD__
keep=()
user=root
while [ "$#" -gt 0 ]; do
  case "$1" in
    --preserve-env=*) IFS=, read -ra names <<<"${1#*=}"; keep+=("${names[@]}") ;;
    -u) user="$2"; shift ;;
    --) shift; break ;;
    -*) ;;
    *) break ;;
  esac
  shift
done
vars=("PATH=$PATH" "HOME=/home/$user" "USER=$user" "JITR_SANDBOX=$JITR_SANDBOX")
for name in "${keep[@]}"; do
  if [ -n "${!name+set}" ]; then vars+=("$name=${!name}"); fi
done
exec env -i "${vars[@]}" "$@"
"""

_ID = """#!/bin/bash
__RECORD__
if [ "$1" = "-u" ] && [ -n "${2:-}" ]; then
  [ -f "$JITR_SANDBOX/users/$2" ] || exit 1
  echo 1001
  exit 0
fi
echo 0
"""

_USERADD = """#!/bin/bash
__RECORD__
mkdir -p "$JITR_SANDBOX/users"
touch "$JITR_SANDBOX/users/${*: -1}"
"""

_RUN_SH = """#!/bin/bash
# The fake runner: records how it was started, then ends as the sandbox says.
printf '%s\\n' "$0" "$@" > "$JITR_SANDBOX/run.argv"
env > "$JITR_SANDBOX/run.env"
printf '%s\\n' "run.sh $*" >> "$JITR_SANDBOX/calls.log"
if [ -f "$JITR_SANDBOX/run.job" ]; then mkdir -p _diag && touch _diag/Worker_20260101-000000-utc.log; fi
if [ -f "$JITR_SANDBOX/run.block" ]; then exec sleep 86400; fi
exit 0
"""

_INSTALL_DEPENDENCIES = """#!/bin/bash
printf '%s\\n' "installdependencies.sh $*" >> "$JITR_SANDBOX/calls.log"
"""


@functools.cache
def runner_tarball(version: str, flavour: str = "") -> bytes:
    """A runner release tarball whose ``run.sh`` records itself; ``flavour`` changes its digest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        files = {
            "run.sh": _RUN_SH,
            "config.sh": "#!/bin/bash\nexit 0\n",
            "bin/installdependencies.sh": _INSTALL_DEPENDENCIES,
            "bin/Runner.Listener": f"#!/bin/bash\necho {version}{flavour}\n",
        }
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def release_path(version: str, arch: str) -> str:
    return f"/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"


@dataclass
class FakeCloud:
    """What a VM talks to over HTTP, on one port; every request is kept in :attr:`requests`."""

    releases: dict[str, bytes] = field(default_factory=dict)
    instance_id: str = "i-0123456789abcdef0"
    region: str = "eu-west-1"
    gce_instance: str = ""
    gce_zone: str = "europe-west4-b"
    gce_project: str = "ci-runners"
    imds_token: str = "imds-token-1"  # noqa: S105 - a fake metadata token
    gce_token: str = "ya29.sandbox-token"  # noqa: S105 - a fake access token
    requests: list[dict[str, str]] = field(default_factory=list)
    guest_attributes: dict[str, str] = field(default_factory=dict)  # GCE: path under guest-attributes/ → value
    port: int = 0

    def serve_release(self, version: str, arch: str, data: bytes) -> None:
        self.releases[release_path(version, arch)] = data

    def requests_to(self, host: str, method: str | None = None) -> list[dict[str, str]]:
        return [r for r in list(self.requests) if r["host"] == host and (method is None or r["method"] == method)]

    def answer(
        self, method: str, host: str, path: str, headers: dict[str, str], sent: bytes = b""
    ) -> tuple[int, bytes]:
        self.requests.append({"method": method, "host": host, "path": path, **headers})
        if host == GITHUB_HOST and method == "GET":
            body = self.releases.get(path)
            return (200, body) if body is not None else (404, b"Not Found")
        if host == IMDS_HOST:
            return self._imds(method, path, headers)
        if host == GCE_METADATA_HOST:
            return self._gce_metadata(method, path, headers, sent)
        if host == COMPUTE_HOST and method == "DELETE":
            expected = f"/compute/v1/projects/{self.gce_project}/zones/{self.gce_zone}/instances/"
            if headers.get("authorization") != f"Bearer {self.gce_token}":
                return 401, b'{"error": {"code": 401}}'
            if not path.startswith(expected):
                return 404, b'{"error": {"code": 404}}'
            return 200, json.dumps({"kind": "compute#operation", "operationType": "delete"}).encode()
        return 404, b"no such host in the sandbox"

    def _imds(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if method == "PUT" and path == "/latest/api/token":
            if "x-aws-ec2-metadata-token-ttl-seconds" not in headers:
                return 400, b""
            return 200, self.imds_token.encode()
        if headers.get("x-aws-ec2-metadata-token") != self.imds_token:
            return 401, b""
        values = {
            "/latest/meta-data/instance-id": self.instance_id,
            "/latest/meta-data/placement/region": self.region,
        }
        return (200, values[path].encode()) if path in values else (404, b"")

    def _gce_metadata(self, method: str, path: str, headers: dict[str, str], sent: bytes) -> tuple[int, bytes]:
        if headers.get("metadata-flavor") != "Google":
            return 403, b"Missing Metadata-Flavor:Google header."
        guest = "/computeMetadata/v1/instance/guest-attributes/"
        if method == "PUT" and path.startswith(guest):
            self.guest_attributes[path.removeprefix(guest)] = sent.decode(errors="replace")
            return 200, b""
        token = json.dumps({"access_token": self.gce_token, "expires_in": 3599, "token_type": "Bearer"})
        values = {
            "/computeMetadata/v1/instance/name": self.gce_instance,
            "/computeMetadata/v1/instance/zone": f"projects/123456789/zones/{self.gce_zone}",
            "/computeMetadata/v1/project/project-id": self.gce_project,
            "/computeMetadata/v1/instance/service-accounts/default/token": token,
        }
        value = values.get(path)
        return (200, value.encode()) if value else (404, b"")


@contextmanager
def fake_cloud(cloud: FakeCloud | None = None) -> Iterator[FakeCloud]:
    """Serve ``cloud`` on 127.0.0.1 (its :attr:`FakeCloud.port` is set) for the block's duration."""
    served = cloud or FakeCloud()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length) if length else b""
            host = (self.headers.get("Host") or "").split(":")[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = served.answer(self.command, host, self.path, headers, sent)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_DELETE = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Outcome:
    """What one run left behind."""

    returncode: int | None
    output: str
    log: str
    calls: list[str]
    runner_argv: list[str] | None
    runner_env: dict[str, str] | None

    def called(self, name: str) -> list[str]:
        return [c for c in self.calls if c.split(" ", 1)[0] == name]

    def assert_ran_the_runner(self, jit_config: str) -> None:
        """``run.sh`` ran as the runner user with no arguments, the JIT config only in its environment."""
        assert self.runner_argv is not None, self.output
        assert self.runner_argv[1:] == []
        assert self.runner_env is not None and self.runner_env["ACTIONS_RUNNER_INPUT_JITCONFIG"] == jit_config
        assert self.called("sudo") == ["sudo --preserve-env=ACTIONS_RUNNER_INPUT_JITCONFIG -u runner -- ./run.sh"]

    def assert_never_shown(self, *secrets: str) -> None:
        """No secret in the script's log, its output or any command line it ran."""
        for secret in secrets:
            assert secret not in self.log and secret not in self.output
            assert all(secret not in call for call in self.calls)


class Sandbox:
    """One temporary VM root with fakes on ``PATH``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        cloud: FakeCloud,
        *,
        package_manager: str = "dnf",
        prebaked_version: str | None = None,
        docker: bool = False,
        extra_fakes: dict[str, str] | None = None,
    ) -> None:
        self.root = directory / "root"
        self.state = directory / "state"
        self.bin = directory / "bin"
        self.cloud = cloud
        for path in (self.root / "var/log", self.root / "tmp", self.state, self.bin):
            path.mkdir(parents=True, exist_ok=True)
        for tool in REAL_TOOLS:
            real = sys.executable if tool == "python3" else shutil.which(tool)
            if real:
                (self.bin / tool).symlink_to(real)
        curl = require_tool("curl", "apt-get install curl")
        fakes = {
            "curl": _CURL.replace("__CURL__", curl),
            "sudo": _SUDO,
            "id": _ID,
            "useradd": _USERADD,
            package_manager: "",
            "chown": "",
            "systemctl": "",
            "shutdown": "",
            "poweroff": "",
            "aws": "",
            **({"docker": ""} if docker else {}),
            **(extra_fakes or {}),
        }
        for name, body in fakes.items():
            self.fake(name, body)
        if prebaked_version is not None:
            runner = self.root / "opt/actions-runner"
            runner.mkdir(parents=True)
            with tarfile.open(fileobj=io.BytesIO(runner_tarball(prebaked_version))) as tar:
                tar.extractall(runner, filter="data")
            (self.root / "opt/jitr").mkdir(parents=True)
            (self.root / "opt/jitr/prebaked-runner-version").write_text(prebaked_version + "\n")
            (self.state / "users").mkdir()
            (self.state / "users/runner").touch()

    def fake(self, name: str, body: str = "", directory: Path | None = None) -> Path:
        """A recording fake ``name`` (in ``directory``, default the fakes on ``PATH``) running ``body``."""
        path = (directory or self.bin) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        text = body if body.startswith("#!") else f"#!/bin/bash\n__RECORD__\n{body}\n"
        path.write_text(text.replace("__RECORD__", _RECORD))
        path.chmod(0o755)
        return path

    def relocate(self, script: str) -> str:
        """``script`` with its absolute ``/opt``, ``/etc``, ``/var/log`` ... paths inside this root."""
        return _RELOCATE.sub(lambda m: f"{self.root}/{m.group(1)}", script)

    def env(self) -> dict[str, str]:
        return {
            "PATH": str(self.bin),
            "HOME": str(self.state),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "JITR_SANDBOX": str(self.state),
            "JITR_SANDBOX_PORT": str(self.cloud.port),
        }

    def run(self, script: str, timeout_s: float = 60.0) -> Outcome:
        """Run ``script`` (relocated) to its end: the script exits, or the teardown shuts down."""
        path = self.state / "startup.sh"
        path.write_text(self.relocate(script))
        output = self.state / "output.txt"
        calls = self.state / "calls.log"
        log = self.root / "var/log/jitr-startup.log"
        with output.open("w") as out:
            process = subprocess.Popen(
                [str(self.bin / "bash"), str(path)],
                env=self.env(),
                cwd=self.state,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:

            def shut_down() -> bool:
                return calls.exists() and any(c.startswith("shutdown ") for c in calls.read_text().splitlines())

            wait_until(lambda: process.poll() is not None or shut_down(), timeout_s, "the script to end")
            if shut_down():
                wait_until(
                    lambda: "jitr: tearing down" in _read(log) + _read(output),
                    deadline_s(10),
                    "the teardown to reach the log",
                )
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        argv = self.state / "run.argv"
        env = self.state / "run.env"
        return Outcome(
            returncode=process.returncode,
            output=_read(output),
            log=_read(log),
            calls=_read(calls).splitlines(),
            runner_argv=argv.read_text().splitlines() if argv.exists() else None,
            runner_env=dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
            if env.exists()
            else None,
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
