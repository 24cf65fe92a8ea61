"""Startup-script assembly: phase order, quoting of hostile values, bash syntax, size limits."""

from __future__ import annotations

import subprocess

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import JitrError
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext, ScriptTooLargeError, assemble, shell_b64
from jitr_core.testing.environment import require_tool

JIT = "eyJydW5uZXIiOiAiZmFrZSJ9"


def context(name: str = "jitr-linux-1-1", provider: str = "aws", jit: str = JIT) -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m",))
    return ScriptContext(name, pool, provider, Secret(jit), "2.336.0", 3600)


def render(ctx: ScriptContext) -> str:
    settings = Settings.from_mapping({})
    return Backend(create_plugin_manager(environ={}, load_entry_points=False), settings).render_startup_script(ctx)


def test_fragments_run_in_phase_then_order() -> None:
    script = assemble(
        [
            Fragment("run", "echo run"),
            Fragment("prelude", "echo pre"),
            Fragment("install", "echo b", order=60),
            Fragment("install", "echo a", order=10),
            Fragment("teardown", "echo bye"),
        ]
    )
    lines = script.splitlines()
    assert lines.index("echo pre") < lines.index("echo a") < lines.index("echo b") < lines.index("echo run")
    assert lines.index("jitr_teardown() {") < lines.index("echo bye") < lines.index("trap jitr_teardown EXIT")
    assert lines.index("trap jitr_teardown EXIT") < lines.index("echo a")


def test_every_teardown_step_runs_whatever_an_earlier_one_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The VM's self-deletion is the last teardown step: a plugin's step before it that fails, reads
    a variable its phase never got to set (the boot failed first), or writes a here-document must
    not keep it from running; nor may a step of the first phase that fails."""
    marks = tmp_path / "marks"
    prelude_fails = assemble([Fragment("prelude", "false"), Fragment("teardown", f"echo deleted >> {marks}", order=90)])
    assert subprocess.run(["bash", "-c", prelude_fails], capture_output=True).returncode == 1
    assert marks.read_text() == "deleted\n"  # a plugin's prelude step failing at boot still deletes the VM
    marks.unlink()
    script = assemble(
        [
            Fragment("pre_run", "CACHE_DIR=/opt/cache"),
            Fragment("run", "exit 3"),  # the boot fails before pre_run
            Fragment("teardown", f"cat >> {marks} <<'EOF'\nreport written\nEOF", order=40, source="report"),
            Fragment("teardown", 'false\nrm -rf "$CACHE_DIR/tmp"', order=50, source="cache"),
            Fragment("teardown", f"echo deleted >> {marks}", order=90, source="cloud"),
        ]
    )
    path = tmp_path / "startup.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).stderr == ""
    ran = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 3, ran.stderr
    assert marks.read_text() == "report written\ndeleted\n", ran.stderr


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(JitrError, match="phase must be one of"):
        Fragment("whenever", "echo")


def test_size_limit_is_enforced() -> None:
    with pytest.raises(ScriptTooLargeError, match="at most 100"):
        assemble([Fragment("run", "x" * 200)], limit_bytes=100)


def test_core_script_is_valid_bash_and_hides_the_jit_config() -> None:
    script = render(context())
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert JIT not in script  # only its base64 form is embedded
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG" in script and "--jitconfig" not in script
    assert "actions-runner-linux-${JITR_RUNNER_ARCH}-${JITR_RUNNER_VERSION}.tar.gz" in script


def test_core_script_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "-s", "bash", "-"], input=render(context()), text=True, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_hostile_values_stay_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    canary = tmp_path / "pwned"
    hostile = f"x'; touch {canary}; echo '$(touch {canary})`touch {canary}`"
    script = render(context(name=hostile))
    prelude = script.split("# --- prelude")[1].split("# --- install")[0]
    prelude = "set -euo pipefail\n" + prelude.replace("exec > >(tee -a /var/log/jitr-startup.log) 2>&1", "")
    subprocess.run(["bash", "-c", prelude + '\nprintf %s "$JITR_RUNNER_NAME"'], check=True, capture_output=True)
    assert not canary.exists()


def test_a_jit_config_that_is_not_base64_is_refused() -> None:
    with pytest.raises(JitrError, match="not base64"):
        render(context(jit="abc'; reboot"))


def test_shell_b64_round_trips() -> None:
    value = "a'b\"c$(d)`e`\nz"
    out = subprocess.run(["bash", "-c", f"printf %s {shell_b64(value)}"], capture_output=True, text=True, check=True)
    assert out.stdout == value
