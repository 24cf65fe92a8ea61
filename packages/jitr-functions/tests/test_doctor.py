"""``jitr doctor`` against a real embedded deployment and the GitHub simulator."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import Deployment, free_port, start_deployment, stop_deployment
from fake_plugin import install_fake_plugin
from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings
from jitr_functions.cli import main
from jitr_github.simulator import GitHubSimulator


def _config(tmp_path: Path, api_url: str, app_id: int, key: str, secret_ref: str) -> Path:
    (tmp_path / "app.pem").write_text(key)
    config = tmp_path / "jitr.toml"
    config.write_text(
        f'provider = "embedded"\nlog_level = "ERROR"\n[github]\napp_id = "{app_id}"\napi_url = "{api_url}"\n'
        f'[secrets]\nwebhook_secret = "{secret_ref}"\ngithub_app_private_key = "file:{tmp_path / "app.pem"}"\n'
        f'[embedded]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[pools]]\nname = "linux"\nlabels = ["self-hosted", "linux"]\nmachine_types = ["local"]\n'
    )
    return config


def test_a_healthy_deployment_passes_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        assert main(["doctor", "--config", str(config), "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert all(c["ok"] for c in checks.values()), checks
    assert {"settings", "plugins", "store", "vms", "queue", "handoff", "secret webhook_secret", "github"} <= set(checks)
    out = json.dumps(checks)
    assert "doctor-webhook-secret" not in out and "PRIVATE KEY" not in out


def test_problems_are_reported_one_by_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, "env:JITR_DOCTOR_MISSING")
        assert main(["doctor", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL secret webhook_secret" in out and "JITR_DOCTOR_MISSING" in out
    assert "ok   github" in out  # one failure does not hide the next check


def test_invalid_settings_are_reported_and_the_plugins_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("max_runners = 0\n")
    assert main(["doctor", "--config", str(bad), "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert not checks["settings"]["ok"] and "max_runners in" in checks["settings"]["detail"]
    assert checks["plugins"]["ok"] and "embedded" in checks["plugins"]["detail"]
    assert set(checks) == {"settings", "plugins"}  # the provider checks need valid settings


def test_a_broken_plugin_is_reported_next_to_valid_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_plugin(monkeypatch, tmp_path / "site", "jitr-broken", "broken", module="jitr_broken_no_such_module")
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, "env:JITR_DOCTOR_MISSING")
        assert main(["doctor", "--config", str(config), "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["settings"]["ok"]
    assert not checks["plugins"]["ok"] and "'broken' (jitr-broken" in checks["plugins"]["detail"]
    assert set(checks) == {"settings", "plugins"}  # the provider checks need the plugins


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A running deployment with its broker, for the doctor to ask."""
    pool = {"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["local"]}
    (tmp_path / "deployment").mkdir()
    started = start_deployment(tmp_path / "deployment", [pool])
    yield started
    stop_deployment(started)


def _with_broker(config: Path, broker_url: str) -> None:
    config.write_text(f'broker_url = "{broker_url}"\n' + config.read_text())


def test_the_handoff_check_names_each_pools_handoff_and_asks_the_broker(
    tmp_path: Path, deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        _with_broker(config, deployment.broker)
        assert main(["doctor", "--config", str(config), "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["handoff"] == {
        "name": "handoff",
        "ok": True,
        "detail": f"linux: broker; the broker at {deployment.broker} answers",
    }


def test_a_url_that_answers_but_not_as_the_broker_fails_the_handoff_check(
    tmp_path: Path, deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    webhook = deployment.runtime.url + "/webhook"  # a jitr route, but not the broker's
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        _with_broker(config, webhook)
        assert main(["doctor", "--config", str(config), "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert not checks["handoff"]["ok"] and f"{webhook} answered" in checks["handoff"]["detail"], checks["handoff"]
    assert "not as the broker does" in checks["handoff"]["detail"]


def test_a_broker_that_cannot_be_reached_fails_the_handoff_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    nowhere = f"http://127.0.0.1:{free_port()}/broker"
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        _with_broker(config, nowhere)
        assert main(["doctor", "--config", str(config), "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert not checks["handoff"]["ok"] and f"the broker at {nowhere} cannot be reached" in checks["handoff"]["detail"]
    assert checks["github"]["ok"]  # the other checks still ran


def test_without_a_broker_url_the_handoff_check_says_serve_brings_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        assert main(["doctor", "--config", str(config), "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["handoff"]["detail"].startswith("linux: metadata (`jitr serve` makes its own broker")


def test_without_state_the_provider_checks_say_so_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [name for name in os.environ if name.startswith("JITR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", "--json"]) == 1  # github.app_id is not set
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    database = tmp_path / "xdg" / "jitr" / "jitr.sqlite3"
    for name in ("store", "vms", "queue"):
        assert checks[name]["ok"] and f"no state at {database}: nothing has run" in checks[name]["detail"], checks
    assert not checks["github"]["ok"]
    assert not (tmp_path / "xdg").exists()


def test_the_checks_leave_the_vms_as_they_find_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Listing the VMs to count them does not stop one past its lifetime: that is ``jitr serve``'s to do."""
    (tmp_path / "hook").write_text("doctor-webhook-secret")
    with GitHubSimulator() as sim:
        config = _config(tmp_path, sim.base_url, sim.app_id, sim.private_key_pem, f"file:{tmp_path / 'hook'}")
        backend = Backend(create_plugin_manager(), Settings.from_toml(config))
        request = LaunchRequest("jitr-linux-1-1", "linux", "local", None, False, "", 0, "sleep 60\n", "doctor-1", 1)
        vm_id = backend.launch_vm(request).vm_id
        try:
            time.sleep(1.5)  # past its maximum lifetime
            assert main(["doctor", "--config", str(config), "--json"]) == 0
            checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
            assert checks["vms"]["detail"] == "embedded: 1 managed VM(s)"
            with sqlite3.connect(f"{(tmp_path / 'state' / 'jitr.sqlite3').as_uri()}?mode=ro", uri=True) as db:
                assert db.execute("SELECT state, end_reason FROM vms").fetchall() == [("running", None)]
        finally:
            backend.terminate_vm(vm_id)
