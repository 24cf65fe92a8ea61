"""The mirror step: rendered in the pre_run phase, and run by bash in jitr's startup-script sandbox."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jitr_docker_mirror
import pytest
from jitr_core.backend import Backend
from jitr_core.errors import JitrError
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import ScriptContext
from jitr_core.testing.sandbox import FakeCloud, Sandbox, fake_cloud, runner_tarball, sha256

MIRROR = "https://mirror.example.com:5000"
VERSION = "2.336.0"
JIT = base64.b64encode(b'{"runner":"jitr-linux-1-1"}').decode()


def context(options: dict[str, object], provider: str = "aws") -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",), options=options)
    tarball = sha256(runner_tarball(VERSION))
    return ScriptContext("jitr-linux-1-1", pool, provider, Secret(JIT), VERSION, 3600, runner_sha256=tarball)


def render(options: dict[str, object]) -> str:
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": "embedded"},
        extra=[("docker-mirror", jitr_docker_mirror)],
        load_entry_points=False,
    )
    return Backend(pm, Settings.from_mapping({})).render_startup_script(context(options))


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with fake_cloud() as served:
        yield served


def test_the_step_is_a_pre_run_fragment_only_for_pools_that_ask() -> None:
    fragment = jitr_docker_mirror.jitr_render_startup_script(context({"docker_mirror": MIRROR}))
    assert fragment is not None and fragment.phase == "pre_run" and fragment.source == "docker-mirror"
    assert MIRROR not in fragment.body  # it reaches the shell only base64-encoded
    assert jitr_docker_mirror.jitr_render_startup_script(context({})) is None
    assert jitr_docker_mirror.jitr_render_startup_script(context({"docker_mirror": MIRROR}, "embedded")) is None
    script = render({"docker_mirror": MIRROR})
    assert script.index("# --- install") < script.index("# from docker-mirror") < script.index("# --- run")


def test_a_mirror_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(JitrError, match=r"options\.docker_mirror must be an http\(s\) URL"):
        jitr_docker_mirror.jitr_render_startup_script(context({"docker_mirror": "x'; reboot #"}))


def test_the_mirror_is_merged_into_daemon_json_and_docker_restarted(tmp_path: Path, cloud: FakeCloud) -> None:
    box = Sandbox(tmp_path, cloud, prebaked_version=VERSION, docker=True)
    (box.root / "etc/docker").mkdir(parents=True)
    existing = {"log-driver": "local", "registry-mirrors": ["https://other.example.com"]}
    (box.root / "etc/docker/daemon.json").write_text(json.dumps(existing))
    outcome = box.run(render({"docker_mirror": MIRROR}))
    config = json.loads((box.root / "etc/docker/daemon.json").read_text())
    assert config == {"log-driver": "local", "registry-mirrors": ["https://other.example.com", MIRROR]}
    assert "systemctl restart docker" in outcome.calls
    assert outcome.calls.index("systemctl restart docker") < outcome.calls.index("run.sh ")
    assert "jitr: Docker uses the registry mirror" in outcome.log


def test_etc_docker_is_created_when_missing(tmp_path: Path, cloud: FakeCloud) -> None:
    box = Sandbox(tmp_path, cloud, prebaked_version=VERSION, docker=True)
    box.run(render({"docker_mirror": MIRROR}))
    assert json.loads((box.root / "etc/docker/daemon.json").read_text()) == {"registry-mirrors": [MIRROR]}


def test_without_docker_the_step_is_skipped_and_the_runner_still_runs(tmp_path: Path, cloud: FakeCloud) -> None:
    box = Sandbox(tmp_path, cloud, prebaked_version=VERSION)
    outcome = box.run(render({"docker_mirror": MIRROR}))
    assert "jitr: no Docker on this image; registry mirror skipped" in outcome.log
    assert not (box.root / "etc/docker").exists()
    assert outcome.called("systemctl") == [] and outcome.runner_argv is not None


def test_a_daemon_json_that_is_not_json_is_left_alone(tmp_path: Path, cloud: FakeCloud) -> None:
    box = Sandbox(tmp_path, cloud, prebaked_version=VERSION, docker=True)
    (box.root / "etc/docker").mkdir(parents=True)
    (box.root / "etc/docker/daemon.json").write_text("{not json")
    outcome = box.run(render({"docker_mirror": MIRROR}))
    assert (box.root / "etc/docker/daemon.json").read_text() == "{not json"
    assert "left unchanged" in outcome.log and outcome.runner_argv is not None
