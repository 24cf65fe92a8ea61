"""The ``jitr`` command: demo, plugins, render-startup-script, status, and serve as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import POOL, get, post, wait_for, webhook_headers
from jitr_core.backend import Backend
from jitr_core.messages import LifecycleMessage, encode
from jitr_core.model import QueueMessage
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_core.testing.environment import require_tool
from jitr_functions.cli import _serve_settings, main, parser
from jitr_functions.local import free_port, own_broker_url
from jitr_github.simulator import GitHubSimulator

LATENCY_KEYS = {"p50", "p95", "p99"}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "faults"])
def test_demo_prints_a_json_summary(capsys, faults):
    argv = ["demo", "--jobs", "24", "--json", "--seed", "3"] + (["--faults"] if faults else [])
    code, out, _ = _run(capsys, *argv)

    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0, report
    assert report["jobs"] == 24 and report["completed"] == 24
    assert report["lost_jobs"] == 0 and report["duplicate_launches"] == 0
    assert report["launches"] >= 24
    assert set(report["latency_ms"]) == LATENCY_KEYS
    assert 0 <= report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert report["faults"] is faults and report["finished_in_time"] is True
    if faults:
        assert report["capacity_errors"] > 0  # the fallback chain was walked


def test_plugins_lists_the_built_in_backends_and_their_hooks(capsys):
    code, out, _ = _run(capsys, "plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["embedded"]["builtin"] is True
    assert {
        "jitr_launch_vm",
        "jitr_enqueue",
        "jitr_store_runner",
        "jitr_fetch_secret",
        "jitr_render_startup_script",
    } <= set(plugins["embedded"]["hooks"])
    assert "jitr_render_startup_script" in plugins["core-script"]["hooks"]
    code, out, _ = _run(capsys, "plugins")
    assert code == 0 and "embedded" in out and "[built-in]" in out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A TOML settings file for an embedded deployment with one pool."""
    path = tmp_path / "jitr.toml"
    path.write_text(_toml(tmp_path, api_url="http://127.0.0.1:9", app_id="1"))
    return path


def _toml(tmp_path: Path, api_url: str, app_id: str) -> str:
    labels = ", ".join(f'"{label}"' for label in POOL["labels"])
    return f"""
log_level = "INFO"
boot_timeout_s = 300

[github]
app_id = "{app_id}"
api_url = "{api_url}"

[secrets]
webhook_secret = "file:{tmp_path / "webhook_secret"}"
github_app_private_key = "file:{tmp_path / "app.pem"}"

[embedded]
state_dir = "{tmp_path / "state"}"

[[pools]]
name = "linux"
labels = [{labels}]
machine_types = ["local"]
max_runners = 4
"""


def _providers() -> list[str]:
    names = {name for name, _ in create_plugin_manager().list_name_plugin()}
    return [p for p in ("embedded", "aws", "gcp") if p in names]


@pytest.mark.parametrize("provider", _providers())
def test_render_startup_script_is_valid_shell(capsys, config, tmp_path, provider):
    code, out, _ = _run(
        capsys, "render-startup-script", "--pool", "linux", "--config", str(config), "--provider", provider
    )
    assert code == 0 and out.startswith("#!")
    script = tmp_path / "startup.sh"
    script.write_text(out)
    subprocess.run(["bash", "-n", str(script)], check=True)
    subprocess.run([require_tool("shellcheck", "apt-get install shellcheck"), str(script)], check=True)


@pytest.mark.parametrize("provider", _providers())
def test_a_broker_mode_pool_renders_a_script_with_no_config(capsys, config, tmp_path, provider):
    text = config.read_text().replace("max_runners = 4", 'max_runners = 4\nhandoff = "broker"')
    config.write_text('broker_url = "https://broker.example/jitr"\n' + text)
    code, out, _ = _run(
        capsys, "render-startup-script", "--pool", "linux", "--config", str(config), "--provider", provider
    )
    assert code == 0 and "jitr_fetch_jit_config" in out and "https://broker.example/jitr" in out
    assert "UFJFVklFVy1OT1QtQS1SRUFMLUNPTkZJRw" not in out
    script = tmp_path / "startup.sh"
    script.write_text(out)
    subprocess.run([require_tool("shellcheck", "apt-get install shellcheck"), str(script)], check=True)


@pytest.mark.parametrize("provider", _providers())
def test_a_warm_pool_renders_its_warm_vms_script(capsys, config, tmp_path, provider):
    """A warm VM asks under its warm name until the warm deadline, and its job gets the pool's whole lifetime."""
    text = config.read_text().replace("max_runners = 4", "max_runners = 4\nwarm = 1\nmax_lifetime_s = 3600")
    config.write_text('broker_url = "https://broker.example/jitr"\n' + text)  # boot_timeout_s = 300
    args = ("render-startup-script", "--pool", "linux", "--config", str(config), "--provider", provider)

    code, cold, _ = _run(capsys, *args)
    assert code == 0 and "export JITR_JOB_MAX_LIFETIME" not in cold and "jitr-linux-warm-" not in cold
    code, warm, _ = _run(capsys, *args, "--warm")
    assert code == 0 and "jitr_fetch_jit_config" in warm and "https://broker.example/jitr" in warm
    if provider != "embedded":  # whose launcher gives the script its name
        assert re.search(r"jitr-linux-warm-[0-9a-f]{10}", warm)  # asks under a warm name
    assert "export JITR_BROKER_DEADLINE=3920" in warm  # boot 300 + idle 3600 (default) + hold 20 (default)
    assert "export JITR_JOB_MAX_LIFETIME=3600" in warm
    script = tmp_path / "startup.sh"
    script.write_text(warm)
    subprocess.run([require_tool("shellcheck", "apt-get install shellcheck"), str(script)], check=True)


def test_only_a_warm_pool_renders_a_warm_script(capsys, config):
    code, out, err = _run(capsys, "render-startup-script", "--pool", "linux", "--config", str(config), "--warm")
    assert code == 2 and out == "" and "pool 'linux' keeps no warm VMs" in err


def test_render_startup_script_names_an_unknown_pool(capsys, config):
    code, _, err = _run(capsys, "render-startup-script", "--pool", "nope", "--config", str(config))
    assert code == 2 and "unknown pool 'nope'" in err


def test_render_startup_script_refuses_an_unknown_provider_naming_the_registered_ones(capsys, config):
    code, out, err = _run(
        capsys, "render-startup-script", "--pool", "linux", "--config", str(config), "--provider", "awz"
    )
    assert code == 2 and out == ""
    known = ", ".join(repr(p) for p in sorted(_providers()))
    assert f"jitr: no registered plugin provides VMs as 'awz'; the registered VM providers are {known}" in err


def test_render_startup_script_says_a_disabled_provider_is_disabled(capsys, config, monkeypatch):
    monkeypatch.setenv("JITR_DISABLE_PLUGINS", "embedded")
    code, out, err = _run(
        capsys, "render-startup-script", "--pool", "linux", "--config", str(config), "--provider", "embedded"
    )
    assert code == 2 and out == ""
    assert "the plugin for 'embedded' is disabled by JITR_DISABLE_PLUGINS" in err and "Traceback" not in err


# -- jitr serve as a process ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8080, "http://127.0.0.1:8080/broker"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000/broker"),
        ("::", 9000, "http://[::1]:9000/broker"),
        ("fd00::5", 80, "http://[fd00::5]:80/broker"),
        ("jitr.internal", 8080, "http://jitr.internal:8080/broker"),
        ("127.0.0.1", 0, ""),  # any free port: not known before the server starts
    ],
)
def test_serve_is_its_own_broker_as_its_local_vms_reach_it(host: str, port: int, url: str) -> None:
    assert own_broker_url(host, port) == url


def test_serve_makes_its_broker_the_default_handoff_unless_told_otherwise(config: Path) -> None:
    served = _serve_settings(str(config), "0.0.0.0", 8123)
    assert served.broker_url == "http://127.0.0.1:8123/broker" and served.pool("linux").handoff == "broker"

    named = config.parent / "named.toml"
    named.write_text('broker_url = "https://broker.example/b"\n' + config.read_text())
    assert _serve_settings(str(named)).broker_url == "https://broker.example/b"

    # VMs of another provider run elsewhere and may not reach this host: no broker unless named
    other = config.parent / "other.toml"
    other.write_text('vm_provider = "aws"\n' + config.read_text())
    assert (
        _serve_settings(str(other)).broker_url == "" and _serve_settings(str(other)).pool("linux").handoff == "metadata"
    )

    opted_out = config.parent / "metadata.toml"
    opted_out.write_text(config.read_text() + 'handoff = "metadata"\n')
    assert _serve_settings(str(opted_out)).pool("linux").handoff == "metadata"


def test_the_rendered_script_is_the_one_serve_gives_its_vms(capsys, config):
    """Local VMs of ``jitr serve`` ask its broker for their config: the preview shows that script."""
    code, out, _ = _run(capsys, "render-startup-script", "--pool", "linux", "--config", str(config))
    assert code == 0 and "jitr_fetch_jit_config" in out and "http://127.0.0.1:8080/broker" in out
    assert "UFJFVklFVy1OT1QtQS1SRUFMLUNPTkZJRw" not in out  # no config placeholder: the broker hands it over


@pytest.mark.parametrize("port", ["65536", "70000", "-1", "http"])
def test_serve_refuses_a_port_that_is_none(capsys, config, port):
    """argparse's exit: a port waitress would wrap around (70000 → 4464) while the broker URL names 70000."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["serve", "--config", str(config), "--port", port])
    assert exited.value.code == 2 and "expected a port from 0 to 65535" in capsys.readouterr().err


def test_serve_on_a_port_in_use_says_so_and_exits_2(capsys, config):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _run(capsys, "serve", "--config", str(config), "--port", str(port))
    assert code == 2 and f"jitr: cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_a_settings_file_that_cannot_be_read_is_a_settings_error(capsys, tmp_path, kind):
    path = tmp_path / "jitr.toml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b'log_level = "\xd0\x00"\n')
    code, _, err = _run(capsys, "render-startup-script", "--pool", "linux", "--config", str(path))
    assert code == 2 and f"jitr: settings file {path}" in err and "Traceback" not in err


class Serve:
    """``jitr serve`` in a child process, as an operator runs it."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("JITR_")}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jitr_functions", "serve", "--config", str(config), "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(self._healthy, 60, "jitr serve to answer /healthz", step_s=0.1, detail=self.log.read_text)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return get(self.url + "/healthz", timeout_s=2) == (200, {"status": "ok"})
        except OSError:
            return False

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _status(capsys, config: Path) -> dict:
    code, out, _ = _run(capsys, "status", "--json", "--config", str(config))
    assert code == 0
    return json.loads(out)


def _running(capsys, config: Path, job_id: int) -> bool:
    return any(j["job_id"] == job_id and j["state"] == "running" for j in _status(capsys, config)["jobs"])


def _started(payload: bytes, job_id: int) -> bytes:
    data = json.loads(payload)
    data["workflow_job"].update(id=job_id, labels=list(POOL["labels"]))
    data["repository"]["private"] = True
    return json.dumps(data).encode()


def test_serve_answers_health_and_stops_gracefully_without_losing_a_message(capsys, tmp_path, e2e_fixture):
    with GitHubSimulator() as sim:
        secret = "whsec-serve-test-0123456789"
        (tmp_path / "webhook_secret").write_text(secret)
        (tmp_path / "app.pem").write_text(sim.private_key_pem)
        config = tmp_path / "jitr.toml"
        config.write_text(_toml(tmp_path, api_url=sim.base_url, app_id=str(sim.app_id)))
        log = tmp_path / "serve.log"

        first = Serve(config, log)
        own = f"the broker at http://127.0.0.1:{first.port}/broker"  # printed once it serves
        wait_for(lambda: own in log.read_text(), 30, "serve to name its own broker", detail=log.read_text)
        body = _started(e2e_fixture("webhooks/workflow_job.in_progress.payload.json"), 7001)
        assert post(first.url + "/webhook", body, webhook_headers("wrong-secret", body))[0] == 401
        assert post(first.url + "/webhook", body, webhook_headers(secret, body)) == (202, {"queued": "lifecycle"})
        wait_for(lambda: _running(capsys, config, 7001), 60, "the delivery to be handled")

        # a message not yet visible when the server is told to stop
        backend = Backend(create_plugin_manager(), Settings.from_toml(config))
        message = LifecycleMessage(
            action="in_progress",
            job_id=7002,
            run_id=1,
            repository="octo/api",
            owner="octo",
            installation_id=None,
            labels=tuple(POOL["labels"]),
        )
        backend.enqueue("lifecycle", encode(message), delay_s=4)
        assert first.terminate() == 0, log.read_text()
        assert "stopped" in log.read_text()
        assert not _running(capsys, config, 7002)

        second = Serve(config, log)
        try:
            wait_for(
                lambda: _running(capsys, config, 7002), 60, "the queued message after the restart", detail=log.read_text
            )
        finally:
            assert second.terminate() == 0, log.read_text()

    code, out, _ = _run(capsys, "status", "--config", str(config))
    assert code == 0 and "2 open jobs, 0 runners in flight" in out


def test_status_of_an_empty_deployment_and_its_dead_letters(capsys, config):
    assert _status(capsys, config) == {"runners": [], "jobs": [], "warm_vms": [], "dead_letters": []}

    backend = Backend(create_plugin_manager(), Settings.from_toml(config))
    backend.dead_letter("jobs", QueueMessage("{not json", {"job_id": "77"}), "queue message is not JSON")

    assert _status(capsys, config)["dead_letters"] == [
        {"queue": "jobs", "job_id": "77", "reason": "queue message is not JSON"}
    ]
    code, out, _ = _run(capsys, "status", "--config", str(config))
    assert code == 0 and "1 dead letters" in out and "queue message is not JSON" in out
