"""Local-process VMs: one process per token through crashes and races, lifetime, capacity, kills."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import CapacityError
from jitr_core.model import LaunchRequest
from jitr_core.testing.environment import wait_until


def _request(
    script: str, token: str | None = None, lifetime_s: int = 3600, name: str = "jitr-linux-1-1"
) -> LaunchRequest:
    return LaunchRequest(
        runner_name=name,
        pool="linux",
        machine_type="local",
        placement=None,
        spot=False,
        image="",
        disk_gb=8,
        startup_script=script,
        idempotency_token=token or uuid.uuid4().hex,
        max_lifetime_s=lifetime_s,
    )


def _eventually(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    return bool(wait_until(predicate, timeout_s))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _counting_script(tmp_path: Path) -> tuple[str, Path]:
    """A script that notes each run (with its pid) and then lives on."""
    starts = tmp_path / "starts"
    return f"echo $$ >> {shlex.quote(str(starts))}\nexec sleep 30\n", starts


def _running(backend: Backend, vm_id: str) -> bool:
    return any(vm.vm_id == vm_id and vm.running for vm in backend.list_vms())


LAUNCH_CODE = """
import sys
from jitr_core.model import LaunchRequest
request = LaunchRequest(runner_name="jitr-linux-1-1", pool="linux", machine_type="local", placement=None, spot=False,
                        image="", disk_gb=8, startup_script=sys.argv[3], idempotency_token=sys.argv[2],
                        max_lifetime_s=3600)
"""


def test_a_crash_between_claim_and_start_is_completed_by_the_next_launch(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    script, starts = _counting_script(tmp_path)
    token = uuid.uuid4().hex
    crashed = run_embedded_python(
        LAUNCH_CODE
        + "from jitr_core.embedded import open_embedded\nopen_embedded(backend.settings).vms.claim(request)\n",
        token,
        script,
    )
    assert crashed.wait(30) == 0, crashed.stderr.read() if crashed.stderr else ""
    assert [vm.vm_id for vm in embedded_backend.list_vms()] == [
        "local-" + hashlib.sha256(token.encode()).hexdigest()[:16]
    ]
    assert _lines(starts) == []
    result = embedded_backend.launch_vm(_request(script, token))
    assert embedded_backend.launch_vm(_request(script, token)).vm_id == result.vm_id
    assert _eventually(lambda: len(_lines(starts)) == 1)
    assert _running(embedded_backend, result.vm_id)


def test_a_process_whose_launcher_died_before_recording_it_never_runs_the_script(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    script, starts = _counting_script(tmp_path)
    token = uuid.uuid4().hex
    crashed = run_embedded_python(
        LAUNCH_CODE
        + """
from jitr_core.embedded import open_embedded
from jitr_core.embedded.vms import launch_lock
import os
vms = open_embedded(backend.settings).vms
row = vms.claim(request)
with launch_lock(row.dir):
    process, go = vms.spawn(row, request)
    print(process.pid, flush=True)
    os._exit(0)  # dies holding the pipe: the process is started, its pid is not recorded
""",
        token,
        script,
    )
    out, err = crashed.communicate(timeout=30)
    assert crashed.returncode == 0, err
    orphan = int(out)
    assert _eventually(lambda: _pid_gone(orphan)), "the orphaned process kept waiting"
    assert _lines(starts) == []
    result = embedded_backend.launch_vm(_request(script, token))
    assert _eventually(lambda: len(_lines(starts)) == 1)
    assert int(_lines(starts)[0]) != orphan
    assert _running(embedded_backend, result.vm_id)


def test_racing_launchers_in_threads_and_processes_start_one_process(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    script, starts = _counting_script(tmp_path)
    token = uuid.uuid4().hex
    embedded_backend.list_vms()  # the schema exists before the race
    others = [
        run_embedded_python(LAUNCH_CODE + "print(backend.launch_vm(request).vm_id)\n", token, script) for _ in range(2)
    ]
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def launch() -> None:
        barrier.wait()
        ids.append(embedded_backend.launch_vm(_request(script, token)).vm_id)

    threads = [threading.Thread(target=launch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for other in others:
        out, err = other.communicate(timeout=30)
        assert other.returncode == 0, err
        ids.append(out.strip())
    assert len(ids) == 8 and len(set(ids)) == 1
    assert _eventually(lambda: len(_lines(starts)) >= 1)
    time.sleep(0.5)  # a second start, if any, would have had time to show
    assert len(_lines(starts)) == 1
    assert [vm.vm_id for vm in embedded_backend.list_vms() if vm.running] == ids[:1]


def test_a_vm_past_its_maximum_lifetime_is_killed(embedded_backend: Backend, tmp_path: Path) -> None:
    script, starts = _counting_script(tmp_path)
    result = embedded_backend.launch_vm(_request(script, lifetime_s=1))
    assert _eventually(lambda: len(_lines(starts)) == 1)
    pid = int(_lines(starts)[0])
    assert _eventually(lambda: not _running(embedded_backend, result.vm_id))
    assert _eventually(lambda: _pid_gone(pid))


def test_max_vms_refuses_with_a_capacity_error_until_a_slot_frees(
    make_embedded_backend: Callable[..., Backend],
) -> None:
    backend = make_embedded_backend(max_vms=2)
    first = _request("sleep 30")
    backend.launch_vm(first)
    backend.launch_vm(_request("sleep 30"))
    with pytest.raises(CapacityError) as refused:
        backend.launch_vm(_request("sleep 30"))
    assert refused.value.code == "local-capacity" and "max_vms is 2" in str(refused.value)
    assert backend.launch_vm(first).vm_id  # the same token is found again, not a new VM
    backend.terminate_vm(backend.launch_vm(first).vm_id)
    assert backend.launch_vm(_request("sleep 30")).vm_id


def test_an_exited_vm_is_seen_as_ended_and_frees_its_slot(make_embedded_backend: Callable[..., Backend]) -> None:
    backend = make_embedded_backend(max_vms=1)
    done = backend.launch_vm(_request("exit 0"))
    assert _eventually(lambda: not _running(backend, done.vm_id))
    assert backend.launch_vm(_request("sleep 30")).vm_id != done.vm_id


def test_terminate_kills_the_whole_group_even_when_it_ignores_sigterm(
    embedded_backend: Backend, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = f"trap '' TERM\nsleep 30 &\necho $$ $! > {shlex.quote(str(pids))}\nwait\n"
    result = embedded_backend.launch_vm(_request(script))
    assert _eventually(lambda: len(_lines(pids)) == 1)
    assert embedded_backend.terminate_vm(result.vm_id)
    assert all(_eventually(lambda p=int(p): _pid_gone(p)) for p in _lines(pids)[0].split())
    assert not _running(embedded_backend, result.vm_id)
    assert embedded_backend.terminate_vm(result.vm_id)
    assert embedded_backend.terminate_vm("local-unknown")


def test_another_process_can_see_and_terminate_a_vm(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    script, starts = _counting_script(tmp_path)
    result = embedded_backend.launch_vm(_request(script))
    assert _eventually(lambda: len(_lines(starts)) == 1)
    other = run_embedded_python(
        """
        vm_id = sys.argv[2]
        assert [vm.running for vm in backend.list_vms() if vm.vm_id == vm_id] == [True]
        assert backend.terminate_vm(vm_id)
        """,
        result.vm_id,
    )
    _, err = other.communicate(timeout=30)
    assert other.returncode == 0, err
    assert _pid_gone(int(_lines(starts)[0]))
    assert not _running(embedded_backend, result.vm_id)


def test_a_vm_sees_only_its_own_variables(
    embedded_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITR_GITHUB_APP_PRIVATE_KEY", "do-not-leak")
    env_file = tmp_path / "env.txt"
    embedded_backend.launch_vm(_request(f"env > {shlex.quote(str(env_file))}.tmp && mv {env_file}.tmp {env_file}\n"))
    assert _eventually(env_file.exists)
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    own = {"PATH", "HOME", "JITR_VM_DIR", "JITR_RUNNER_NAME", "JITR_RUNNER_COMMAND", "JITR_VM_TOKEN"}
    assert set(env) <= own | {"PWD", "SHLVL", "_"}
    assert env["JITR_RUNNER_NAME"] == "jitr-linux-1-1" and env["HOME"] == env["JITR_VM_DIR"]
    vm_dir = Path(env["JITR_VM_DIR"])
    assert vm_dir.parent == tmp_path / "state" / "vms" and (vm_dir.stat().st_mode & 0o777) == 0o700


CLAIM_ONLY = "from jitr_core.embedded import open_embedded\nopen_embedded(backend.settings).vms.claim(request)\n"


def test_a_pending_vm_whose_launcher_died_is_ended_after_the_grace_and_frees_its_slot(
    make_embedded_backend: Callable[..., Backend], run_embedded_python: Callable[..., subprocess.Popen[str]]
) -> None:
    backend = make_embedded_backend(max_vms=1, launch_grace_s=0)
    token = uuid.uuid4().hex
    crashed = run_embedded_python(
        LAUNCH_CODE + CLAIM_ONLY,
        token,
        "sleep 30",
    )
    assert crashed.wait(30) == 0, crashed.stderr.read() if crashed.stderr else ""
    assert [vm.running for vm in backend.list_vms()] == [False]
    assert backend.launch_vm(_request("sleep 30")).vm_id  # the slot is free again


def test_a_pending_vm_is_left_to_its_launcher_within_the_grace(
    make_embedded_backend: Callable[..., Backend], run_embedded_python: Callable[..., subprocess.Popen[str]]
) -> None:
    backend = make_embedded_backend(max_vms=1, launch_grace_s=3600)
    crashed = run_embedded_python(
        LAUNCH_CODE + CLAIM_ONLY,
        uuid.uuid4().hex,
        "sleep 30",
    )
    assert crashed.wait(30) == 0, crashed.stderr.read() if crashed.stderr else ""
    assert [vm.running for vm in backend.list_vms()] == [True]
    with pytest.raises(CapacityError):
        backend.launch_vm(_request("sleep 30"))


def test_a_pending_vm_whose_launcher_holds_its_lock_is_never_ended(
    make_embedded_backend: Callable[..., Backend],
) -> None:
    from jitr_core.embedded import open_embedded
    from jitr_core.embedded.vms import launch_lock

    backend = make_embedded_backend(launch_grace_s=0)
    row = open_embedded(backend.settings).vms.claim(_request("sleep 30"))
    with launch_lock(row.dir):
        assert [vm.running for vm in backend.list_vms()] == [True]
    assert [vm.running for vm in backend.list_vms()] == [False]


def test_a_vm_ended_for_a_dead_launcher_is_started_by_the_next_launch_with_its_token(
    make_embedded_backend: Callable[..., Backend],
    run_embedded_python: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    backend = make_embedded_backend(max_vms=1, launch_grace_s=0)
    script, starts = _counting_script(tmp_path)
    token = uuid.uuid4().hex
    crashed = run_embedded_python(LAUNCH_CODE + CLAIM_ONLY, token, script)
    assert crashed.wait(30) == 0, crashed.stderr.read() if crashed.stderr else ""
    assert [vm.running for vm in backend.list_vms()] == [False]

    result = backend.launch_vm(_request(script, token))

    assert _eventually(lambda: len(_lines(starts)) == 1)
    assert _running(backend, result.vm_id)
    assert backend.launch_vm(_request(script, token)).vm_id == result.vm_id
    assert len(_lines(starts)) == 1
