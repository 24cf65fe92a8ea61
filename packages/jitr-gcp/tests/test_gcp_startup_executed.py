"""The rendered GCE startup script, run by bash in a sandbox: every image path, both architectures.

The script is what scaleup renders (core's steps and this plugin's); the sandbox
(:mod:`jitr_core.testing.sandbox`) relocates it into a temporary root, puts recording fakes on
``PATH`` and answers the metadata server, the Compute API's delete and the runner download from a
fake server on 127.0.0.1.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool
from jitr_core.startup import Fragment, ScriptContext
from jitr_core.testing.sandbox import (
    COMPUTE_HOST,
    GCE_METADATA_HOST,
    FakeCloud,
    Outcome,
    Sandbox,
    fake_cloud,
    runner_tarball,
    sha256,
)
from jitr_gcp import plugin
from jitr_gcp.testing.backend import gcp_settings

VERSION = "2.336.0"
OLDER = "2.335.1"
RUNNER = "jitr-linux-9-1"
JIT = base64.b64encode(b'{"runner":"jitr-linux-9-1","secret":"jit-secret-do-not-leak"}').decode()
TARBALL = runner_tarball(VERSION)
METADATA_LIMIT = 256 * 1024


class BrokenStep:
    @hookimpl
    def jitr_render_startup_script(self, context: ScriptContext) -> Fragment:
        return Fragment("pre_run", "false  # a plugin step that fails", source="broken")


def render(arch: str, *, pinned: bool = False, lifetime_s: int = 3600, extra: list[tuple[str, object]] = ()) -> str:
    pool = Pool("linux", frozenset({"self-hosted"}), ("e2-standard-2",), arch=arch)
    context = ScriptContext(
        RUNNER, pool, "gcp", Secret(JIT), VERSION, lifetime_s, runner_sha256="" if pinned else sha256(TARBALL)
    )
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": "embedded"}, extra=[("gcp", plugin), *extra], load_entry_points=False
    )
    return Backend(pm, gcp_settings()).render_startup_script(context, METADATA_LIMIT)


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with fake_cloud(FakeCloud(gce_instance=RUNNER)) as served:
        for arch in ("x64", "arm64"):
            served.serve_release(VERSION, arch, TARBALL)
        yield served


def sandbox(tmp_path: Path, cloud: FakeCloud, image: str) -> Sandbox:
    prebaked = {"stock": None, "same": VERSION, "older": OLDER}[image]
    box = Sandbox(tmp_path, cloud, package_manager="apt-get", prebaked_version=prebaked)
    if prebaked:  # the jitr image has the Ops Agent, installed and not running
        (box.root / "etc/google-cloud-ops-agent").mkdir(parents=True)
    return box


def assert_deleted(outcome: Outcome, cloud: FakeCloud, runner_exit: str = "no-job") -> None:
    """The VM writes its exit report as a guest attribute, then deletes itself."""
    assert cloud.guest_attributes == {"jitr/runner-exit": runner_exit}
    deletes = cloud.requests_to(COMPUTE_HOST, "DELETE")
    assert [d["path"] for d in deletes] == [
        f"/compute/v1/projects/{cloud.gce_project}/zones/{cloud.gce_zone}/instances/{RUNNER}"
    ]
    assert deletes[0]["authorization"] == f"Bearer {cloud.gce_token}"
    metadata = cloud.requests_to(GCE_METADATA_HOST)
    assert metadata and all(r["metadata-flavor"] == "Google" for r in metadata)
    assert outcome.calls[-1] == "shutdown -h now"


@pytest.mark.parametrize("arch", ["x64", "arm64"])
@pytest.mark.parametrize("image", ["stock", "same", "older"])
def test_every_image_path_runs_the_runner_once_and_deletes_the_vm(
    tmp_path: Path, cloud: FakeCloud, image: str, arch: str
) -> None:
    box = sandbox(tmp_path, cloud, image)
    outcome = box.run(render(arch))
    outcome.assert_ran_the_runner(JIT)
    assert_deleted(outcome, cloud)
    outcome.assert_never_shown(JIT, "jit-secret-do-not-leak")
    downloads = [r["path"] for r in cloud.requests_to("github.com")]
    if image == "same":
        assert downloads == []
    else:
        assert downloads == [
            f"/actions/runner/releases/download/v{VERSION}/actions-runner-linux-{arch}-{VERSION}.tar.gz"
        ]
    assert bool(outcome.called("apt-get")) == (image == "stock")
    assert bool(outcome.called("useradd")) == (image == "stock")
    assert bool(outcome.called("installdependencies.sh")) == (image == "stock")
    agent = [c for c in outcome.called("systemctl") if "google-cloud-ops-agent" in c]
    if image == "stock":
        assert agent == []
    else:
        assert agent == ["systemctl restart google-cloud-ops-agent", "systemctl stop google-cloud-ops-agent"]
        config = (box.root / "etc/google-cloud-ops-agent/config.yaml").read_text()
        assert "include_paths: [/var/log/jitr-startup.log]" in config
        assert f'static_value: "{RUNNER}"' in config and 'static_value: "linux"' in config


def test_a_runner_that_ran_a_job_reports_it_before_the_vm_deletes_itself(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "same")
    (box.state / "run.job").touch()  # the agent ran a job: its Worker log is in _diag
    outcome = box.run(render("x64"))
    assert "jitr: runner exit report: job" in outcome.log
    assert_deleted(outcome, cloud, runner_exit="job")
    [put] = cloud.requests_to(GCE_METADATA_HOST, "PUT")
    assert put["path"] == "/computeMetadata/v1/instance/guest-attributes/jitr/runner-exit"
    assert cloud.requests.index(put) < cloud.requests.index(cloud.requests_to(COMPUTE_HOST, "DELETE")[0])
    outcome.assert_never_shown(JIT, "jit-secret-do-not-leak")


def test_a_download_that_differs_from_the_pin_tears_down_without_running(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "older")
    outcome = box.run(render("arm64", pinned=True))  # the real pin of 2.336.0; the served tarball is a fake
    assert outcome.runner_argv is None
    assert "does not match its pinned SHA-256 58b758e4" in outcome.log
    assert_deleted(outcome, cloud)


def test_the_watchdog_tears_down_at_the_lifetime(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "same")
    (box.state / "run.block").touch()
    outcome = box.run(render("arm64", lifetime_s=1))
    assert outcome.runner_argv is not None
    assert "jitr: maximum lifetime reached" in outcome.log
    assert_deleted(outcome, cloud)


def test_a_failing_plugin_step_still_tears_down(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "stock")
    outcome = box.run(render("x64", extra=[("broken", BrokenStep())]))
    assert outcome.runner_argv is None
    assert_deleted(outcome, cloud)


def test_a_package_index_that_cannot_be_updated_tears_down_without_running(tmp_path: Path, cloud: FakeCloud) -> None:
    """A stock image whose package index cannot be updated (a mirror mid-sync) gets no dependencies:
    the boot ends after one retry instead of starting the runner without them."""
    failing = {"apt-get": 'if [ "$1" = update ]; then echo "E: mirror sync in progress" >&2; exit 100; fi'}
    box = Sandbox(tmp_path, cloud, package_manager="apt-get", prebaked_version=None, extra_fakes=failing)
    outcome = box.run(render("x64"))
    assert outcome.runner_argv is None
    assert outcome.called("apt-get") == ["apt-get update -qq", "apt-get update -qq"]
    assert_deleted(outcome, cloud)


def test_a_pool_can_turn_log_shipping_off() -> None:
    pool = Pool("linux", frozenset({"self-hosted"}), ("e2-standard-2",), options={"log_shipping": "false"})
    context = ScriptContext(RUNNER, pool, "gcp", Secret(JIT), VERSION, 3600)
    bodies = "".join(f.body for f in plugin.jitr_render_startup_script(context=context) or [])
    assert "google-cloud-ops-agent" not in bodies
