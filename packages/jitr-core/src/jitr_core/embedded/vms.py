"""Local-process "VMs": each runner is a bash process group on this machine. No isolation.

For development, tests and the demo: a job's steps run as the user running jitr. A launch
writes the startup script into a private directory under ``<state_dir>/vms/`` and runs it with
``bash`` in a new session, with only ``PATH`` and the ``JITR_*`` variables in its environment
(the control plane's own secrets never reach it).

At most one process per idempotency token, across threads, processes and crashes: the token
is a unique column claimed first; launchers of one VM take turns on a lock file in its
directory; and the process waits for a "go" that its launcher sends only after storing the pid.
A launcher that dies before that leaves a process that exits without running the script, and
the next launch with the token starts it.

Exits, VMs past their maximum lifetime, and pending VMs whose launcher died (a crash of the
process that recorded them) are dealt with when the backend opens and whenever VMs are listed or
launched, but not by a reader of the state opened read-only (``jitr doctor``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import CapacityError, LaunchError
from ..model import LaunchRequest, LaunchResult, VMIdentity, VMInfo
from .config import EmbeddedConfig
from .db import Database
from .identity import FORGET as FORGET_TOKEN
from .identity import TOKEN_ENV, issue_token, verify_token
from .proc import alive, signal_group, start_time

PROVIDER = "embedded"
PENDING, RUNNING, ENDED = "pending", "running", "ended"
STOP_POLL_S = 0.05

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SELECT = "SELECT vm_id, runner_name, pool, dir, state, created_at, max_lifetime_s, pid, start_time FROM vms"
_BY_TOKEN = _SELECT + " WHERE token = ?"
_BY_ID = _SELECT + " WHERE vm_id = ?"
_ACTIVE = _SELECT + " WHERE state IN ('pending', 'running')"
_ALL = _SELECT + " ORDER BY created_at, vm_id"
_COUNT_ACTIVE = "SELECT count(*) FROM vms WHERE state IN ('pending', 'running')"
_INSERT = """INSERT INTO vms (vm_id, token, runner_name, pool, dir, state, created_at, max_lifetime_s)
VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"""
_STARTED = "UPDATE vms SET state = 'running', pid = ?, start_time = ? WHERE vm_id = ? AND state = 'pending'"
_END = "UPDATE vms SET state = 'ended', ended_at = ?, end_reason = ? WHERE vm_id = ? AND state = ?"
_OLD = "SELECT vm_id, dir FROM vms WHERE state = 'ended' AND ended_at < ?"
_FORGET = "DELETE FROM vms WHERE vm_id = ? AND state = 'ended'"
LAUNCHER_GONE = "launcher gone"
# A VM ended only because its launcher vanished never ran: the next launch with its token starts it.
_ABANDONED = "SELECT 1 FROM vms WHERE vm_id = ? AND state = 'ended' AND end_reason = 'launcher gone' AND pid IS NULL"
_REVIVE = """UPDATE vms SET state = 'pending', created_at = ?, ended_at = NULL, end_reason = NULL
WHERE vm_id = ? AND state = 'ended' AND end_reason = 'launcher gone' AND pid IS NULL"""

# Runs the script only after reading "go" on the pipe (fd {fd}); EOF (a dead launcher) ends it.
_WRAPPER = 'IFS= read -r go <&{fd} && [ "$go" = go ] && exec bash ./startup.sh {fd}<&-'

_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class VMRow:
    vm_id: str
    runner_name: str
    pool: str
    dir: Path
    state: str
    created_at: float
    max_lifetime_s: int
    pid: int | None
    start_time: str | None


class LocalVMs:
    """Launch, list and terminate local-process VMs recorded in the ``vms`` table."""

    def __init__(self, db: Database, config: EmbeddedConfig) -> None:
        self._db = db
        self._config = config
        self._root = config.state_dir / "vms"

    def launch(self, request: LaunchRequest) -> LaunchResult:
        self.refresh()
        row = self.claim(request)
        if row.state == PENDING:
            with launch_lock(row.dir):
                row = self._row(row.vm_id) or row
                if row.state == PENDING:
                    self.start(row, request)
        return LaunchResult(row.vm_id, PROVIDER, request.machine_type, request.placement, request.spot)

    def claim(self, request: LaunchRequest) -> VMRow:
        """The VM of ``request``'s token: found, or recorded as pending if a slot is free."""
        digest = hashlib.sha256(request.idempotency_token.encode()).hexdigest()[:16]
        name = _UNSAFE.sub("-", request.runner_name).strip(".-")[:64] or "vm"
        row = VMRow(
            f"local-{digest}",
            request.runner_name,
            request.pool,
            self._root / f"{name}-{digest}",
            PENDING,
            time.time(),
            request.max_lifetime_s,
            None,
            None,
        )
        with self._db.transaction() as conn:
            found = conn.execute(_BY_TOKEN, (request.idempotency_token,)).fetchone()
            abandoned = found is not None and conn.execute(_ABANDONED, (_vm_row(found).vm_id,)).fetchone()
            if found is not None and not abandoned:
                return _vm_row(found)
            active = conn.execute(_COUNT_ACTIVE).fetchone()[0]
            if active >= self._config.max_vms:
                raise CapacityError(
                    f"{active} local VMs are running and [embedded] max_vms is {self._config.max_vms}",
                    code="local-capacity",
                )
            if found is not None:
                conn.execute(_REVIVE, (row.created_at, _vm_row(found).vm_id))
                return replace(_vm_row(found), state=PENDING, created_at=row.created_at)
            conn.execute(
                _INSERT,
                (
                    row.vm_id,
                    request.idempotency_token,
                    row.runner_name,
                    row.pool,
                    str(row.dir),
                    row.created_at,
                    row.max_lifetime_s,
                ),
            )
        return row

    def start(self, row: VMRow, request: LaunchRequest) -> None:
        """Run the startup script of a pending VM; call with its launch lock held."""
        try:
            process, go = self.spawn(row, request)
        except (OSError, ValueError) as exc:
            self._end(row, "could not start")
            raise LaunchError(f"local VM {row.vm_id} for {row.runner_name!r} could not start: {exc}") from None
        try:  # unless it was terminated meanwhile; then closing the pipe ends the process
            if self._db.write(_STARTED, (process.pid, start_time(process.pid), row.vm_id)).rowcount == 1:
                with contextlib.suppress(BrokenPipeError):  # it died at once: the next refresh records that
                    os.write(go, b"go\n")
        finally:
            os.close(go)

    def spawn(self, row: VMRow, request: LaunchRequest) -> tuple[subprocess.Popen[bytes], int]:
        """Start the process, waiting for "go"; returns it and the pipe's write end."""
        script = os.open(row.dir / "startup.sh", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(script, "w") as handle:
            handle.write(request.startup_script)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(row.dir),
            "JITR_VM_DIR": str(row.dir),
            "JITR_RUNNER_NAME": request.runner_name,
            "JITR_RUNNER_COMMAND": self._config.runner_command,
            TOKEN_ENV: issue_token(self._db, row.vm_id),
        }
        read_end, write_end = os.pipe()
        try:
            with open(row.dir / "vm.log", "ab") as log:
                process = subprocess.Popen(
                    ["bash", "-c", _WRAPPER.format(fd=read_end), "jitr-vm"],
                    cwd=row.dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(read_end,),
                )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        with _children_lock:
            _children.add(process)
        return process, write_end

    def terminate(self, vm_id: str) -> bool:
        row = self._row(vm_id)
        if row is not None and row.state == PENDING and not self._end(row, "terminated"):
            row = self._row(vm_id)  # its launcher started it meanwhile
        if row is not None and row.state == RUNNING:
            self._stop([row], "terminated")
        return True

    def identity(self, proof: Mapping[str, str]) -> VMIdentity:
        """The running VM whose identity token ``proof["token"]`` is; IdentityError otherwise."""
        return verify_token(self._db, proof)

    def list(self) -> list[VMInfo]:
        if not self._db.read_only:  # a reader lists the VMs as recorded, stopping none
            self.refresh()
        return [
            VMInfo(row.vm_id, row.runner_name, row.pool, PROVIDER, row.created_at, running=row.state != ENDED)
            for row in map(_vm_row, self._db.read(_ALL))
        ]

    def refresh(self) -> None:
        """Record exits, end abandoned launches, stop VMs past their maximum lifetime, forget old ones.

        A VM still pending after ``launch_grace_s`` whose launch lock nobody holds has no launcher
        left (it was killed between recording the VM and starting it): it is ended, so it holds
        no ``max_vms`` slot and no runner name hides behind it.
        """
        _reap_children()
        now = time.time()
        expired: list[VMRow] = []
        for row in map(_vm_row, self._db.read(_ACTIVE)):
            if row.pid is None or row.start_time is None:
                if now - row.created_at > row.max_lifetime_s:
                    self._end(row, "never started")
                elif now - row.created_at >= self._config.launch_grace_s and _unlocked(row.dir):
                    self._end(row, LAUNCHER_GONE)
            elif not alive(row.pid, row.start_time):
                signal_group(row.pid, row.start_time, signal.SIGKILL)  # whatever the script left behind
                self._end(row, "exited")
            elif now - row.created_at > row.max_lifetime_s:
                expired.append(row)
        if expired:
            self._stop(expired, "maximum lifetime reached")
        for vm_id, directory in self._db.read(_OLD, (now - self._config.vm_retention_s,)):
            if Path(directory).parent == self._root:
                shutil.rmtree(directory, ignore_errors=True)
            self._db.write(_FORGET, (vm_id,))

    def _stop(self, rows: Sequence[VMRow], reason: str) -> None:
        """SIGTERM each process group, SIGKILL what is left after the grace period, record the end."""
        running = [(row, row.pid, row.start_time) for row in rows if row.pid is not None and row.start_time is not None]
        for _, pid, start in running:
            signal_group(pid, start, signal.SIGTERM)
        deadline = time.monotonic() + self._config.terminate_grace_s
        while time.monotonic() < deadline and any(alive(pid, start) for _, pid, start in running):
            time.sleep(STOP_POLL_S)
        for row, pid, start in running:
            signal_group(pid, start, signal.SIGKILL)
            self._end(row, reason)
        _reap_children()

    def _end(self, row: VMRow, reason: str) -> bool:
        """Mark ``row`` ended if it is still in the state it was read in; its identity token dies with it."""
        ended = self._db.write(_END, (time.time(), reason, row.vm_id, row.state)).rowcount == 1
        if ended:
            self._db.write(FORGET_TOKEN, (row.vm_id,))
        return ended

    def _row(self, vm_id: str) -> VMRow | None:
        rows = self._db.read(_BY_ID, (vm_id,))
        return _vm_row(rows[0]) if rows else None


@contextmanager
def launch_lock(directory: Path) -> Iterator[None]:
    """Take turns with every other launcher of this VM, in any process (released if one dies)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / ".launch.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _unlocked(directory: Path) -> bool:
    """Whether no launcher holds the launch lock of the VM in ``directory`` right now."""
    try:
        handle = open(directory / ".launch.lock", "a")  # noqa: SIM115 - closed below, releasing the probe
    except OSError:
        return True  # no directory: no launcher got as far as the lock
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _vm_row(row: Any) -> VMRow:
    vm_id, runner_name, pool, directory, *rest = row
    return VMRow(vm_id, runner_name, pool, Path(directory), *rest)


def _reap_children() -> None:
    """Collect exit statuses of processes this process started, so none lingers as a zombie."""
    with _children_lock:
        for process in [p for p in _children if p.poll() is not None]:
            _children.discard(process)
