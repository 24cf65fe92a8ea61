"""The embedded run fragments: hostile names and JIT configs reach the runner intact and never execute."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jitr_core.backend import Backend
from jitr_core.hookspecs import hookimpl
from jitr_core.model import LaunchRequest
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext
from jitr_core.testing.environment import require_tool, wait_until

POOL = Pool(name="linux", labels=frozenset({"self-hosted", "linux"}), machine_types=("local",))
RUNNER_COMMAND = (
    'printf %s "$JITR_JITCONFIG" > jit.out && printf %s "$ACTIONS_RUNNER_INPUT_JITCONFIG" > runner-input.out'
    ' && printf %s "$JITR_RUNNER_NAME" > name.out'
)


def _context(runner_name: str, jit_config: str, provider: str = "embedded") -> ScriptContext:
    return ScriptContext(
        runner_name=runner_name,
        pool=POOL,
        provider=provider,
        jit_config=Secret(jit_config),
        runner_version="2.336.0",
        max_lifetime_s=3600,
    )


def _hostile(canary: Path) -> str:
    touch = f"touch {canary}"
    return f"x$({touch})`{touch}`;{touch};'\"\\ ${{IFS}}\n{touch} #"


def test_hostile_names_and_jit_configs_never_execute(
    make_embedded_backend: Callable[..., Backend], tmp_path: Path
) -> None:
    backend = make_embedded_backend(runner_command=RUNNER_COMMAND)
    canary = tmp_path / "canary"
    name, jit_config = _hostile(canary), "eyJ" + _hostile(canary)
    script = backend.render_startup_script(_context(name, jit_config))
    assert str(canary) not in script
    result = backend.launch_vm(
        LaunchRequest(
            runner_name=name,
            pool="linux",
            machine_type="local",
            placement=None,
            spot=False,
            image="",
            disk_gb=8,
            startup_script=script,
            idempotency_token=uuid.uuid4().hex,
            max_lifetime_s=600,
        )
    )
    wait_until(
        lambda: not any(vm.vm_id == result.vm_id and vm.running for vm in backend.list_vms()), 60, "the VM to exit"
    )
    (vm_dir,) = (tmp_path / "state" / "vms").iterdir()
    assert (vm_dir / "jit.out").read_text() == (vm_dir / "runner-input.out").read_text() == jit_config
    assert (vm_dir / "name.out").read_text() == name
    assert not canary.exists()
    assert "jitr: local VM for runner" in (vm_dir / "vm.log").read_text()


def test_the_rendered_script_is_valid_bash_and_passes_shellcheck(embedded_backend: Backend, tmp_path: Path) -> None:
    script = embedded_backend.render_startup_script(_context("jitr-linux-1-1", "eyJhIjoxfQ=="))
    path = tmp_path / "startup.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    checked = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_embedded_fragments_are_only_for_embedded_vms(embedded_backend: Backend) -> None:
    ours = [f for f in embedded_backend.startup_fragments(_context("r", "eyJ9")) if f.source == "embedded"]
    assert {f.phase for f in ours} == {"prelude", "run"}
    other = embedded_backend.startup_fragments(_context("r", "eyJ9", provider="aws"))
    assert all(f.source != "embedded" for f in other)


class _RunnerUnpacked:
    """An install fragment standing in for the runner: a ``run.sh`` that records how it was started."""

    @hookimpl
    def jitr_render_startup_script(self, context: ScriptContext) -> Fragment:
        body = (
            "printf '%s\\n' '#!/bin/bash' 'printf %s \"$*\" > argv.out'"
            " 'printf %s \"$ACTIONS_RUNNER_INPUT_JITCONFIG\" > env.out' > run.sh\nchmod +x run.sh"
        )
        return Fragment("install", body, source="test-runner")


def test_the_default_runner_command_keeps_the_jit_config_out_of_argv(
    embedded_section: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings.from_mapping({"provider": "embedded", "embedded": embedded_section})
    pm = create_plugin_manager(load_entry_points=False, environ={}, extra=[("test-runner", _RunnerUnpacked())])
    backend = Backend(pm, settings)
    jit_config = "eyJzZWNyZXQiOiJqaXQifQ=="
    script = backend.render_startup_script(_context("jitr-linux-7-1", jit_config))
    result = backend.launch_vm(
        LaunchRequest("jitr-linux-7-1", "linux", "local", None, False, "", 8, script, uuid.uuid4().hex, 600)
    )
    try:
        wait_until(
            lambda: not any(vm.vm_id == result.vm_id and vm.running for vm in backend.list_vms()), 60, "the VM to exit"
        )
    finally:
        backend.terminate_vm(result.vm_id)
    (vm_dir,) = (tmp_path / "state" / "vms").iterdir()
    assert (vm_dir / "env.out").read_text() == jit_config
    assert (vm_dir / "argv.out").read_text() == ""
