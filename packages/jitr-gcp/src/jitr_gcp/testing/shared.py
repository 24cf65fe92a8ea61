"""One Firestore and one Pub/Sub emulator for all the processes of a test run (pytest-xdist workers).

Each emulator is a JVM that takes seconds of CPU to start and warm up; one pair per worker costs
that once per worker, on machines whose cores the workers already share. Here the first worker
that needs them starts both (it is their owner) and writes their ports to ``emulators.json`` in a
directory all the run's workers share; the others add themselves to its ``users`` and use them.
Everything happens under an exclusive lock on ``emulators.lock`` in that directory.

Sharing an emulator shares no state between tests: each test names its own topics,
subscriptions, Firestore collection or record kinds, as it did when tests ran one after another
on a worker's own emulators.

The owner started the emulators, so they stop with it: at its end it waits until every other user
has left (or died), then stops them and removes the file; should it be killed, the start guard
stops them (see :mod:`.emulators`). A worker that comes later starts a new pair.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import emulators

NAMES = ("firestore", "pubsub")
STATE = "emulators.json"
LOCK = "emulators.lock"


@contextlib.contextmanager
def running(directory: Path | None, names: Sequence[str] = NAMES) -> Iterator[dict[str, emulators.Emulator | str]]:
    """The emulators ``names``, shared through ``directory`` (None: this process's own), for the ``with`` block.

    Each name maps to its running emulator, or to why it is not installed here
    (:class:`~.emulators.EmulatorUnavailable`'s message). Raises EmulatorFailed when one
    installed does not start, or a shared one no longer answers.
    """
    if directory is None:
        started = start_all(names)
        try:
            yield started
        finally:
            stop_all(started)
        return
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        started, owner = _join(directory, names)
    try:
        yield started
    finally:
        _leave(directory, started, owner)


def start_all(names: Sequence[str]) -> dict[str, emulators.Emulator | str]:
    """Start the installed ones of ``names`` side by side; a missing one maps to the reason."""
    found: dict[str, emulators.Emulator | str] = {}
    for name in names:
        try:
            emulators.find(name)
        except emulators.EmulatorUnavailable as exc:
            found[name] = str(exc)
    wanted = [name for name in names if name not in found]
    with ThreadPoolExecutor(max(1, len(wanted))) as pool:
        futures = {name: pool.submit(emulators.start, name) for name in wanted}
    failures = []
    for name, future in futures.items():
        try:
            found[name] = future.result()
        except emulators.EmulatorFailed as exc:
            failures.append(exc)
    if failures:
        stop_all(found)
        raise failures[0]
    return found


def stop_all(started: dict[str, emulators.Emulator | str]) -> None:
    for emulator in started.values():
        if isinstance(emulator, emulators.Emulator):
            emulator.stop()


def _join(directory: Path, names: Sequence[str]) -> tuple[dict[str, emulators.Emulator | str], bool]:
    """Use the run's emulators if their owner lives, else start them and own them (under the lock)."""
    state = _read(directory)
    if state and _alive(state["owner"]):
        shared: dict[str, emulators.Emulator | str] = {}
        for name in names:
            entry = state["emulators"][name]
            if isinstance(entry, str):
                shared[name] = entry
                continue
            emulator = emulators.Emulator(name, entry["port"], None, Path(entry["log"]), dict(entry["env"]))
            if not emulators._answers(emulator.port):
                raise emulators.EmulatorFailed(
                    f"the shared {name} emulator (pid {state['owner']}'s) stopped answering on port "
                    f"{emulator.port}:\n{emulator.log_tail()}"
                )
            shared[name] = emulator
        state["users"] = [*_living(state["users"]), os.getpid()]
        _write(directory, state)
        return shared, False
    started = start_all(names)
    _write(
        directory,
        {
            "owner": os.getpid(),
            "users": [os.getpid()],
            "emulators": {
                name: e if isinstance(e, str) else {"port": e.port, "log": str(e.log_path), "env": e.env}
                for name, e in started.items()
            },
        },
    )
    return started, True


def _leave(directory: Path, started: dict[str, emulators.Emulator | str], owner: bool) -> None:
    """Take this process off the users; the owner waits for the others to leave, then stops the emulators."""
    if not owner:
        with _locked(directory):
            state = _read(directory)
            if state is not None:
                state["users"] = [pid for pid in _living(state["users"]) if pid != os.getpid()]
                _write(directory, state)
        return
    while True:
        with _locked(directory):
            state = _read(directory)
            ours = state if state is not None and state["owner"] == os.getpid() else None
            if ours is None or not [pid for pid in _living(ours["users"]) if pid != os.getpid()]:
                stop_all(started)
                if ours is not None:
                    (directory / STATE).unlink()
                return
        time.sleep(0.2)  # the others still run tests; each leaves at the end of its session


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE).read_text())
    except FileNotFoundError:
        return None
    return state


def _write(directory: Path, state: dict[str, Any]) -> None:
    partial = directory / f"{STATE}.{os.getpid()}"
    partial.write_text(json.dumps(state))
    partial.replace(directory / STATE)


def _living(pids: list[int]) -> list[int]:
    return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
