"""Process identity for local VMs: a pid together with its start time.

Pids are reused, so a VM's process is "alive" only while a process with its pid *and* its start
time exists, and a signal is sent to its process group only when that group cannot belong to
someone else. Without ``/proc`` (macOS, BSD) the start time is unknown and a pid alone is trusted.
"""

from __future__ import annotations

import contextlib
import os
import signal

_HAS_PROC = os.path.exists("/proc/self/stat")
_FOREIGN = "foreign"  # a process we may not signal: never one of our VMs


def probe(pid: int) -> tuple[str, bool] | None:
    """``(start time, alive)`` of process ``pid`` (a zombie is not alive), or None when there is none."""
    if not _HAS_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return _FOREIGN, True
        return "", True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19], fields[0] not in ("Z", "X")  # fields 22 (starttime) and 3 (state) of proc(5)


def start_time(pid: int) -> str:
    found = probe(pid)
    return found[0] if found else ""


def alive(pid: int, start: str) -> bool:
    found = probe(pid)
    return found is not None and found[1] and found[0] == start


def signal_group(pid: int, start: str, signum: signal.Signals) -> None:
    """Signal the process group led by ``pid``, unless the pid now belongs to another process.

    When no process has the pid, a group with that id can only be what is left of ours: the
    kernel does not hand out a pid that is still a group id.
    """
    found = probe(pid)
    if found is not None and found[0] != start:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
