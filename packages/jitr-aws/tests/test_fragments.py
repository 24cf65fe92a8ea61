"""The EC2 startup-script fragments: valid bash, shellcheck-clean, and doing what they say when run."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

from jitr_aws.ec2 import USER_DATA_LIMIT
from jitr_aws.fragments import fragments
from jitr_core.backend import Backend
from jitr_core.plugins import JitrPluginManager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext, assemble
from jitr_core.testing.environment import require_tool

JIT = base64.b64encode(b'{"runner":"jitr-linux-1-1","secret":"do-not-print"}').decode()


def _context(provider: str = "aws", runner_name: str = "jitr-linux-1-1") -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",))
    return ScriptContext(runner_name, pool, provider, Secret(JIT), "2.336.0", 3600)


def _own_script() -> str:
    return assemble([*(fragments(_context()) or []), Fragment("run", 'echo "runner ran"')])


def _full_script(plugin_manager: JitrPluginManager, runner_name: str = "jitr-linux-1-1") -> str:
    backend = Backend(plugin_manager, Settings.from_mapping({"provider": "aws"}))
    return backend.render_startup_script(_context(runner_name=runner_name), USER_DATA_LIMIT)


def _shellcheck(script: str) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "-s", "bash", "-"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_only_an_aws_vm_gets_the_fragments() -> None:
    assert fragments(_context("gcp")) is None
    phases = {f.phase: f for f in fragments(_context()) or []}
    assert set(phases) == {"prelude", "teardown"}
    assert phases["teardown"].order > 50  # after other plugins' teardown steps


def test_own_fragments_are_valid_bash() -> None:
    subprocess.run(["bash", "-n"], input=_own_script(), text=True, check=True)


def test_own_fragments_pass_shellcheck() -> None:
    _shellcheck(_own_script())


def test_the_full_script_with_core_fragments_is_valid_and_fits_user_data(plugin_manager: JitrPluginManager) -> None:
    hostile = "jitr-x-1-1'; rm -rf / #"  # names reach the script only quoted
    script = _full_script(plugin_manager, hostile)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert len(script.encode()) <= USER_DATA_LIMIT
    assert "X-aws-ec2-metadata-token" in script and "shutdown -h now" in script
    assert "do-not-print" not in script


def test_the_full_script_passes_shellcheck(plugin_manager: JitrPluginManager) -> None:
    _shellcheck(_full_script(plugin_manager))


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_script_asks_imds_v2_and_terminates_itself_on_exit(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = f'echo "$(basename "$0") $*" >> {calls}'
    _stub(
        bin_dir,
        "curl",
        log
        + """
case "$*" in
  *"-X PUT"*) echo imds-token ;;
  *instance-id*) echo i-0123456789abcdef0 ;;
  *placement/region*) echo eu-west-1 ;;
esac""",
    )
    _stub(bin_dir, "aws", log)
    _stub(bin_dir, "shutdown", log)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", _own_script()], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "runner ran" in result.stdout
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("curl") and "-X PUT" in lines[0] and "/latest/api/token" in lines[0]
    assert "X-aws-ec2-metadata-token: imds-token" in lines[1] and lines[1].endswith("/meta-data/instance-id")
    assert lines[-2:] == [
        "aws ec2 terminate-instances --region eu-west-1 --instance-ids i-0123456789abcdef0",
        "shutdown -h now",
    ]


def test_without_metadata_the_script_still_shuts_down(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "curl", "exit 7")  # IMDS unreachable
    _stub(bin_dir, "aws", f'echo "aws $*" >> {calls}')
    _stub(bin_dir, "shutdown", f'echo "shutdown $*" >> {calls}')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", _own_script()], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["shutdown -h now"]


def _broker_context() -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",), handoff="broker")
    return ScriptContext(
        "jitr-linux-1-1", pool, "aws", Secret(""), "2.336.0", 3600, handoff="broker", broker_url="https://b.example/x"
    )


def test_a_broker_mode_script_holds_no_secret_and_passes_shellcheck(plugin_manager: JitrPluginManager) -> None:
    backend = Backend(plugin_manager, Settings.from_mapping({"provider": "aws"}))
    script = backend.render_startup_script(_broker_context(), USER_DATA_LIMIT)
    assert "jitr_identity_proof" in script and "jitr_fetch_jit_config" in script
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(printf %s '" not in script and "instance-identity/signature" in script
    _shellcheck(script)


def test_the_identity_proof_is_the_document_and_signature_read_with_imds_v2(tmp_path: Path) -> None:
    require_tool("jq", "apt-get install jq")
    document = '{\n  "instanceId" : "i-0123456789abcdef0",\n  "region" : "eu-west-1"\n}'
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "document").write_text(document)
    _stub(
        bin_dir,
        "curl",
        f'echo "curl $*" >> {calls}'
        + f"""
case "$*" in
  *"-X PUT"*) echo imds-token ;;
  *instance-identity/document*) cat {tmp_path / "document"} ;;
  *instance-identity/signature*) printf 'c2lnbmF0dXJl\\nbW9yZQ==' ;;
esac""",
    )
    own = [f for f in fragments(_broker_context()) or [] if f.phase == "prelude"]
    script = assemble([*own, Fragment("run", f"jitr_identity_proof > {tmp_path / 'proof'}")])
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    proof = json.loads((tmp_path / "proof").read_text())
    assert proof == {"document": document, "signature": "c2lnbmF0dXJl\nbW9yZQ=="}
    asked = calls.read_text()
    assert "X-aws-ec2-metadata-token: imds-token" in asked and "/latest/dynamic/instance-identity/document" in asked
