"""The GCE startup-script fragments: valid shell, quoted input, and a teardown that deletes the VM.

The teardown is run for real under bash with ``curl`` and ``shutdown`` replaced by recording
stubs on ``PATH``: the metadata server and the Compute API are what the stubs answer.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from jitr_core.backend import Backend
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool
from jitr_core.startup import Fragment, ScriptContext, assemble
from jitr_core.testing.environment import require_tool
from jitr_gcp import fragments, plugin
from jitr_gcp.testing.backend import gcp_settings

JIT_CONFIG = "eyJydW5uZXIiOiJqaXQtY29uZmlnIn0="
POOL = Pool(name="linux", labels=frozenset({"self-hosted", "linux"}), machine_types=("e2-standard-2",))

CURL_STUB = r"""#!/bin/bash
# Records every call; answers like the metadata server; DELETE answers like the Compute API.
echo "curl $*" >> "$JITR_TEST_LOG"
url="${*: -1}"
case "$url" in
  */instance/name) [ -n "${STUB_NAME:-}" ] && echo -n "$STUB_NAME" || exit 22 ;;
  */instance/zone) echo -n "projects/123456789/zones/europe-west4-b" ;;
  */project/project-id) echo -n "ci-runners" ;;
  */service-accounts/default/token)
    [ -n "${STUB_TOKEN:-}" ] || exit 22
    echo -n "{\"access_token\":\"$STUB_TOKEN\",\"expires_in\":3599,\"token_type\":\"Bearer\"}" ;;
  https://compute.googleapis.com/*) [ "${STUB_DELETE:-ok}" = ok ] || exit 22 ;;
  *) exit 6 ;;
esac
"""


def context(runner_name: str = "jitr-linux-42-1", provider: str = "gcp") -> ScriptContext:
    return ScriptContext(
        runner_name=runner_name,
        pool=POOL,
        provider=provider,
        jit_config=Secret(JIT_CONFIG),
        runner_version="2.336.0",
        max_lifetime_s=3600,
    )


def test_fragments_only_for_gcp() -> None:
    assert plugin.jitr_render_startup_script(context=context(provider="aws")) is None
    mine = plugin.jitr_render_startup_script(context=context())
    assert mine is not None
    assert [f.phase for f in mine] == ["prelude", "teardown", "prelude", "teardown"]
    assert all(JIT_CONFIG not in f.body for f in mine)


def test_the_full_script_with_core_steps_is_valid_bash_and_shellcheck_clean(tmp_path: Path) -> None:
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": "embedded"}, extra=[("gcp", plugin)], load_entry_points=False
    )
    script = Backend(pm, gcp_settings()).render_startup_script(context(), limit_bytes=256 * 1024)
    assert "jitr_gcp_delete_self" in script and "Metadata-Flavor: Google" in script
    path = tmp_path / "startup.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    _shellcheck(path)


def _shellcheck(path: Path) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _run(tmp_path: Path, runner_name: str = "jitr-linux-42-1", **stub_env: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (
        ("curl", CURL_STUB),
        ("shutdown", '#!/bin/bash\necho "shutdown $*" >> "$JITR_TEST_LOG"\n'),
        ("poweroff", '#!/bin/bash\necho "poweroff $*" >> "$JITR_TEST_LOG"\n'),
    ):
        stub = bin_dir / name
        stub.write_text(body)
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    script = assemble([*fragments.fragments(context(runner_name)), Fragment("run", "echo running", source="test")])
    path = tmp_path / "startup.sh"
    path.write_text(script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "JITR_TEST_LOG": str(log), **stub_env}
    result = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "running" in result.stdout
    return log.read_text().splitlines()


def test_on_exit_the_vm_deletes_itself_with_the_metadata_token_then_powers_off(tmp_path: Path) -> None:
    calls = _run(tmp_path, STUB_NAME="jitr-linux-42-1", STUB_TOKEN="ya29.token")
    [delete] = [c for c in calls if "-X DELETE" in c]
    assert "Authorization: Bearer ya29.token" in delete
    assert delete.endswith(
        "https://compute.googleapis.com/compute/v1/projects/ci-runners/zones/europe-west4-b/instances/jitr-linux-42-1"
    )
    assert all("Metadata-Flavor: Google" in c for c in calls if "computeMetadata" in c)
    assert calls[-1] == "shutdown -h now"


def test_without_a_token_the_vm_powers_off(tmp_path: Path) -> None:
    calls = _run(tmp_path, STUB_NAME="jitr-linux-42-1")
    assert not [c for c in calls if "-X DELETE" in c]
    assert calls[-1] == "shutdown -h now"


def test_a_refused_delete_still_powers_off(tmp_path: Path) -> None:
    calls = _run(tmp_path, STUB_NAME="jitr-linux-42-1", STUB_TOKEN="t", STUB_DELETE="denied")
    assert [c for c in calls if "-X DELETE" in c]
    assert calls[-1] == "shutdown -h now"


def test_a_hostile_runner_name_stays_data(tmp_path: Path) -> None:
    hostile = "x'; touch pwned; echo '"
    calls = _run(tmp_path, runner_name=hostile, STUB_TOKEN="t")  # no metadata name: the fallback is used
    assert not (tmp_path / "pwned").exists()
    [delete] = [c for c in calls if "-X DELETE" in c]
    assert delete.endswith(f"/instances/{hostile}")


def _broker_context() -> ScriptContext:
    pool = Pool(name="linux", labels=frozenset({"self-hosted"}), machine_types=("e2-standard-2",), handoff="broker")
    return ScriptContext(
        "jitr-linux-42-1",
        pool,
        "gcp",
        Secret(""),
        "2.336.0",
        3600,
        handoff="broker",
        broker_url="https://broker-abc-ew.a.run.app",
        broker_audience="https://broker-abc-ew.a.run.app/?x=1&y=2",
    )


def test_a_broker_mode_script_holds_no_secret_and_is_shellcheck_clean(tmp_path: Path) -> None:
    pm = create_plugin_manager(
        environ={"JITR_DISABLE_PLUGINS": "embedded"}, extra=[("gcp", plugin)], load_entry_points=False
    )
    script = Backend(pm, gcp_settings()).render_startup_script(_broker_context(), limit_bytes=256 * 1024)
    assert "jitr_identity_proof" in script and "jitr_fetch_jit_config" in script
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(printf %s '" not in script
    path = tmp_path / "startup.sh"
    path.write_text(script)
    _shellcheck(path)


def test_the_identity_proof_asks_a_full_token_for_the_broker_audience(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "curl"
    stub.write_text(
        '#!/bin/bash\necho "curl $*" >> "$JITR_TEST_LOG"\n'
        'case "${*: -1}" in *identity\\?audience=*) echo -n "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln" ;; '
        "*) exit 22 ;; esac\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    own = [f for f in fragments.fragments(_broker_context()) if f.phase == "prelude"]
    path = tmp_path / "proof.sh"
    path.write_text(assemble([*own, Fragment("run", "jitr_identity_proof > proof.json", source="test")]))
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "JITR_TEST_LOG": str(log)}
    result = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "proof.json").read_text() == '{"token":"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"}'
    [asked] = [c for c in log.read_text().splitlines() if "identity?" in c]
    assert asked.endswith(
        "instance/service-accounts/default/identity?audience=https%3A%2F%2Fbroker-abc-ew.a.run.app%2F%3Fx%3D1%26y%3D2"
        "&format=full"
    )
