"""The broker-mode startup script: no secret in it, shellcheck clean, and a fetch that retries what
is worth retrying (against a small HTTP server playing the broker) and stops on a refusal."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.broker_script import broker_prelude, fetch_fragment
from jitr_core.errors import SettingsError
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import ScriptContext
from jitr_core.testing.environment import require_tool

POOL = Pool("linux", frozenset({"self-hosted"}), ("m",), handoff="broker")
JIT = "eyJydW5uZXIiOiAiZmFrZSJ9"
URL = "https://broker.example.com/broker"


def context(provider: str, url: str = URL, deadline_s: int = 600) -> ScriptContext:
    return ScriptContext(
        "jitr-linux-1-1",
        POOL,
        provider,
        Secret(""),
        "2.336.0",
        3600,
        handoff="broker",
        broker_url=url,
        broker_deadline_s=deadline_s,
    )


def render(ctx: ScriptContext, settings: Settings | None = None) -> str:
    backend = Backend(create_plugin_manager(environ={}, load_entry_points=False), settings or Settings.from_mapping({}))
    return backend.render_startup_script(ctx)


@pytest.mark.parametrize("provider", ["aws", "embedded"])
def test_a_broker_mode_script_holds_no_config_and_passes_shellcheck(provider: str, tmp_path: Path) -> None:
    settings = Settings.from_mapping({"provider": "embedded", "embedded": {"state_dir": str(tmp_path)}})
    script = render(context(provider), settings)
    assert "base64 -d" not in script and 'ACTIONS_RUNNER_INPUT_JITCONFIG="$(printf \'%s\' "$body"' in script
    assert "jitr_fetch_jit_config" in script and "export JITR_BROKER_URL=" in script
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "-s", "bash", "-"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_a_hostile_broker_url_stays_data(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    url = f"https://broker.example.com/?a=$(touch {canary})&b=`touch {canary}`;touch {canary}"
    prelude = broker_prelude(context("aws", url))
    shown = subprocess.run(["bash", "-c", prelude + '\nprintf %s "$JITR_BROKER_URL"'], capture_output=True, text=True)
    assert shown.stdout == url and not canary.exists()


def test_a_metadata_mode_script_still_carries_the_config() -> None:
    ctx = ScriptContext("jitr-linux-1-1", POOL, "aws", Secret(JIT), "2.336.0", 3600)
    assert "base64 -d" in render(ctx) and "jitr_fetch_jit_config" not in render(ctx)


class _Broker(ThreadingHTTPServer):
    """Answers each POST with the next (status, body) of ``script``; records the requests."""

    def __init__(self, script: list[tuple[int, dict[str, Any]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.requests: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Broker

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append(json.loads(self.rfile.read(length)))
        status, body = self.server.script.pop(0) if self.server.script else (410, {"error": "gone"})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def broker() -> Iterator[Any]:
    servers: list[_Broker] = []

    def start(script: list[tuple[int, dict[str, Any]]]) -> _Broker:
        server = _Broker(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _fetch(url: str, tmp_path: Path, deadline_s: int = 60) -> subprocess.CompletedProcess[str]:
    """The fetch fragment with a proof function, then the config written where the test reads it."""
    require_tool("curl", "apt-get install curl")
    script = "\n".join(
        [
            "set -euo pipefail",
            "export JITR_RUNNER_NAME=jitr-linux-1-1",
            broker_prelude(context("embedded", url, deadline_s)),
            """jitr_identity_proof() { printf '{"token":"%s"}' "vm-1.secret"; }""",
            fetch_fragment("test").body,
            f'printf %s "$ACTIONS_RUNNER_INPUT_JITCONFIG" > {tmp_path / "config"}',
        ]
    )
    return subprocess.run(["bash", "-c", script], text=True, capture_output=True, timeout=120)


def test_the_fetch_retries_busy_and_failing_answers_then_keeps_the_config(broker: Any, tmp_path: Path) -> None:
    server = broker(
        [
            (503, {"error": "GitHub could not register the runner now; retry"}),
            (409, {"error": "being handed over"}),
            (200, {"runner_name": "jitr-linux-1-1", "jit_config": JIT}),
        ]
    )
    result = _fetch(f"http://127.0.0.1:{server.server_port}/broker", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config").read_text() == JIT
    assert JIT not in result.stdout + result.stderr
    assert (
        server.requests
        == [{"runner_name": "jitr-linux-1-1", "provider": "embedded", "proof": {"token": "vm-1.secret"}}] * 3
    )


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_the_fetch_stops_at_a_refusal(broker: Any, tmp_path: Path, status: int) -> None:
    server = broker([(status, {"error": "no config for you", "runner_name": "jitr-linux-1-1"})])
    result = _fetch(f"http://127.0.0.1:{server.server_port}/broker", tmp_path)
    assert result.returncode != 0
    assert f"refused this VM (HTTP {status}): " in result.stderr and len(server.requests) == 1


def test_the_fetch_gives_up_at_its_deadline(tmp_path: Path) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_port  # closed again at once: nothing listens there
    result = _fetch(f"http://127.0.0.1:{port}/broker", tmp_path, deadline_s=2)
    assert result.returncode != 0 and "no JIT config from the broker within 2 s" in result.stderr


def test_broker_settings_are_validated() -> None:
    pool = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m"], "handoff": "broker"}
    with pytest.raises(SettingsError, match="broker_url"):
        Settings.from_mapping({"pools": [pool]})
    with pytest.raises(SettingsError, match="handoff"):
        Settings.from_mapping({"pools": [{**pool, "handoff": "ssm"}]})
    for bad in ("ftp://broker.example.com", "https://broker.example.com/a b", "https://x/'quote'"):
        with pytest.raises(SettingsError, match="broker_url"):
            Settings.from_mapping({"pools": [pool], "broker_url": bad})
    settings = Settings.from_mapping({"pools": [pool], "broker_url": "https://broker.example.com/"})
    assert settings.pools[0].handoff == "broker" and settings.broker_audience == "https://broker.example.com/"
    assert Settings.from_mapping({"pools": [{**pool, "handoff": "metadata"}]}).pools[0].handoff == "metadata"
    env = Settings.from_env({"JITR_BROKER_URL": "https://b.example.com", "JITR_BROKER_AUDIENCE": "aud-1"})
    assert (env.broker_url, env.broker_audience) == ("https://b.example.com", "aud-1")


def test_the_broker_is_the_default_handoff_wherever_there_is_a_broker(tmp_path: Path) -> None:
    """A pool naming no handoff pulls its config from the deployment's broker, or from the broker
    of the serving process; it takes it in its script only where no broker exists."""
    pool = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m"]}
    url = "https://broker.example.com/broker"
    assert Settings.from_mapping({"pools": [pool], "broker_url": url}).pools[0].handoff == "broker"
    explicit = Settings.from_mapping({"pools": [{**pool, "handoff": "metadata"}], "broker_url": url})
    assert explicit.pools[0].handoff == "metadata"  # the option for VMs that cannot reach the broker
    assert Settings.from_mapping({"pools": [pool]}).pools[0].handoff == "metadata"  # no broker at all

    served = Settings.from_mapping({"pools": [pool]}, default_broker_url="http://127.0.0.1:8080/broker")
    assert served.pools[0].handoff == "broker" and served.broker_url == "http://127.0.0.1:8080/broker"
    named = Settings.from_mapping({"pools": [pool], "broker_url": url}, default_broker_url="http://127.0.0.1:1/b")
    assert named.broker_url == url  # the settings' own broker wins over the serving process's
    config = tmp_path / "jitr.toml"
    config.write_text('[[pools]]\nname = "linux"\nlabels = ["self-hosted"]\nmachine_types = ["m"]\n')
    assert Settings.from_toml(config, default_broker_url="http://127.0.0.1:1/b").pools[0].handoff == "broker"
    env = Settings.from_env({"JITR_POOLS": json.dumps([pool])}, default_broker_url="http://127.0.0.1:1/b")
    assert env.pools[0].handoff == "broker" and env.broker_audience == "http://127.0.0.1:1/b"
