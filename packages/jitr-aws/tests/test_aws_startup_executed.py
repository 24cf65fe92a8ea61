"""The rendered EC2 startup script, run by bash in a sandbox: every image path, both architectures.

The script is what scaleup renders (core's steps and this plugin's); the sandbox
(:mod:`jitr_core.testing.sandbox`) relocates it into a temporary root, puts recording fakes on
``PATH`` and answers IMDSv2 and the runner download from a fake server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jitr_aws.plugin
import pytest
from jitr_aws.ec2 import USER_DATA_LIMIT
from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext
from jitr_core.testing.sandbox import IMDS_HOST, FakeCloud, Outcome, Sandbox, fake_cloud, runner_tarball, sha256

VERSION = "2.336.0"
OLDER = "2.335.1"
RUNNER = "jitr-linux-7-1"
JIT = base64.b64encode(b'{"runner":"jitr-linux-7-1","secret":"jit-secret-do-not-leak"}').decode()
TARBALL = runner_tarball(VERSION)
AGENT = "opt/aws/amazon-cloudwatch-agent/bin"


class BrokenStep:
    @hookimpl
    def jitr_render_startup_script(self, context: ScriptContext) -> Fragment:
        return Fragment("pre_run", "false  # a plugin step that fails", source="broken")


def render(arch: str, *, pinned: bool = False, lifetime_s: int = 3600, extra: list[tuple[str, object]] = ()) -> str:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",), arch=arch)
    context = ScriptContext(
        RUNNER, pool, "aws", Secret(JIT), VERSION, lifetime_s, runner_sha256="" if pinned else sha256(TARBALL)
    )
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": "embedded"},
        extra=[("aws", jitr_aws.plugin), *extra],
        load_entry_points=False,
    )
    return Backend(pm, Settings.from_mapping({"provider": "aws"})).render_startup_script(context, USER_DATA_LIMIT)


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with fake_cloud() as served:
        for arch in ("x64", "arm64"):
            served.serve_release(VERSION, arch, TARBALL)
        yield served


# Stock Amazon Linux 2023 ships curl-minimal, which conflicts with the full curl package: dnf
# installs curl only when allowed to erase what conflicts with it.
AL2023_DNF = """
case " $* " in
  *" install "*" curl "*)
    case " $* " in *" --allowerasing "*) ;; *)
      echo "Error: package curl-minimal conflicts with curl provided by curl (try --allowerasing)" >&2
      exit 1 ;;
    esac ;;
esac
"""


def sandbox(tmp_path: Path, cloud: FakeCloud, image: str) -> Sandbox:
    prebaked = {"stock": None, "same": VERSION, "older": OLDER}[image]
    box = Sandbox(tmp_path, cloud, package_manager="dnf", prebaked_version=prebaked, extra_fakes={"dnf": AL2023_DNF})
    if prebaked:  # the jitr image has the CloudWatch agent, installed and not running
        box.fake("amazon-cloudwatch-agent-ctl", directory=box.root / AGENT)
    return box


def assert_terminated(outcome: Outcome, cloud: FakeCloud, runner_exit: str = "no-job") -> None:
    """The instance tags itself with the exit report, then terminates itself."""
    assert outcome.called("aws") == [
        f"aws ec2 create-tags --region {cloud.region} --resources {cloud.instance_id}"
        f" --tags Key=jitr-runner-exit,Value={runner_exit}",
        f"aws ec2 terminate-instances --region {cloud.region} --instance-ids {cloud.instance_id}",
    ]
    assert outcome.calls[-1] == "shutdown -h now"
    tokens = cloud.requests_to(IMDS_HOST, "PUT")
    assert len(tokens) == 1 and tokens[0]["x-aws-ec2-metadata-token-ttl-seconds"] == "300"
    reads = cloud.requests_to(IMDS_HOST, "GET")
    assert reads and all(r["x-aws-ec2-metadata-token"] == cloud.imds_token for r in reads)


@pytest.mark.parametrize("arch", ["x64", "arm64"])
@pytest.mark.parametrize("image", ["stock", "same", "older"])
def test_every_image_path_runs_the_runner_once_and_terminates(
    tmp_path: Path, cloud: FakeCloud, image: str, arch: str
) -> None:
    box = sandbox(tmp_path, cloud, image)
    outcome = box.run(render(arch))
    outcome.assert_ran_the_runner(JIT)
    assert_terminated(outcome, cloud)
    outcome.assert_never_shown(JIT, "jit-secret-do-not-leak")
    downloads = [r["path"] for r in cloud.requests_to("github.com")]
    if image == "same":
        assert downloads == []
    else:
        assert downloads == [
            f"/actions/runner/releases/download/v{VERSION}/actions-runner-linux-{arch}-{VERSION}.tar.gz"
        ]
        assert (box.root / "opt/actions-runner/bin/Runner.Listener").read_text().strip().endswith(VERSION)
    installed = bool(outcome.called("dnf")) or bool(outcome.called("useradd"))
    assert installed == (image == "stock")
    assert bool(outcome.called("installdependencies.sh")) == (image == "stock")
    if image == "stock":
        assert outcome.called("useradd") == ["useradd --create-home --shell /bin/bash runner"]
    agent = outcome.called("amazon-cloudwatch-agent-ctl")
    if image == "stock":
        assert agent == []  # no agent on a stock image: nothing to ship with
    else:
        assert agent[0].startswith("amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:")
        assert agent[-1] == "amazon-cloudwatch-agent-ctl -a stop"
        assert outcome.calls.index(agent[-1]) < outcome.calls.index(outcome.called("aws")[0])
        config = json.loads((box.root / "opt/aws/amazon-cloudwatch-agent/etc/jitr-logs.json").read_text())
        streams = config["logs"]["logs_collected"]["files"]["collect_list"]
        assert {(s["log_group_name"], s["log_stream_name"]) for s in streams} == {
            ("/jitr/linux", f"{RUNNER}/startup"),
            ("/jitr/linux", f"{RUNNER}/runner-diag"),
        }


def test_a_download_that_differs_from_the_pin_tears_down_without_running(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "stock")
    outcome = box.run(render("x64", pinned=True))  # the real pin of 2.336.0; the served tarball is a fake
    assert outcome.runner_argv is None
    assert "does not match its pinned SHA-256 04cf0be1" in outcome.log
    assert not (box.root / "opt/actions-runner/run.sh").exists()
    assert_terminated(outcome, cloud)


def test_a_runner_that_ran_a_job_reports_it(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "same")
    (box.state / "run.job").touch()  # the agent ran a job: its Worker log is in _diag
    outcome = box.run(render("x64"))
    assert "jitr: runner exit report: job" in outcome.log
    assert_terminated(outcome, cloud, runner_exit="job")
    outcome.assert_never_shown(JIT, "jit-secret-do-not-leak")


def test_the_watchdog_tears_down_at_the_lifetime(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "same")
    (box.state / "run.block").touch()  # the runner never finishes its job
    outcome = box.run(render("x64", lifetime_s=1))
    assert outcome.runner_argv is not None
    assert "jitr: maximum lifetime reached" in outcome.log
    assert_terminated(outcome, cloud)


def test_a_failing_plugin_step_still_tears_down(tmp_path: Path, cloud: FakeCloud) -> None:
    box = sandbox(tmp_path, cloud, "same")
    outcome = box.run(render("arm64", extra=[("broken", BrokenStep())]))
    assert outcome.runner_argv is None
    assert outcome.called("amazon-cloudwatch-agent-ctl")[-1] == "amazon-cloudwatch-agent-ctl -a stop"
    assert_terminated(outcome, cloud)


def test_a_pool_can_turn_log_shipping_off() -> None:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",), options={"log_shipping": False})
    context = ScriptContext(RUNNER, pool, "aws", Secret(JIT), VERSION, 3600)
    bodies = "".join(f.body for f in jitr_aws.plugin.jitr_render_startup_script(context) or [])
    assert "amazon-cloudwatch-agent" not in bodies
