"""A lease in the store, so overlapping runs of a periodic function do not both act.

A lease expires by itself after its TTL (a function's timeout on the serverless platforms), so a
crashed holder blocks later runs only until then. On one machine that is too long: ``jitr
serve`` killed mid-run would stop scale-down for minutes after its restart. So a lease names its
holder — the kernel boot, PID namespace, process id and process start time — and a run on the
same machine takes over a lease whose holder process is gone. Where the holder cannot be checked
(another machine, another PID namespace, no ``/proc``), the TTL decides as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .records import LEASE, Store

_PROC = Path("/proc")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _identity(pid: int) -> str | None:
    """``boot:pid-namespace:pid:start-time`` of a live process on this machine, None when unknown."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return None
    started = _start_time(pid)
    return f"{boot}:{namespace}:{pid}:{started}" if started is not None else None


def holder_is_gone(holder: str) -> bool:
    """True only when ``holder`` names a process of this machine and namespace that no longer runs."""
    boot_ns, _, pid = holder.rpartition(":")[0].rpartition(":")  # the start time dropped
    mine = _identity(os.getpid())
    if mine is None or not pid.isdigit() or not boot_ns:
        return False
    if mine.rsplit(":", 2)[0] != boot_ns:
        return False  # another machine or PID namespace: cannot tell
    return _identity(int(pid)) != holder  # gone, or the PID now belongs to a newer process


@contextlib.contextmanager
def lease(store: Store, name: str, ttl_s: float) -> Iterator[bool]:
    """Yield True when this run holds the lease, False when another live run does; release at the end."""
    holder = _identity(os.getpid()) or ""
    record = store.create(LEASE, name, "held", data={"holder": holder}, expires_at=store.clock() + ttl_s)
    held = store.backend.load(LEASE, name) if record is None else None
    orphaned = held is not None and holder_is_gone(str(held.data.get("holder") or ""))
    if held is not None and orphaned and store.backend.delete(LEASE, name, expected_version=held.version):
        record = store.create(LEASE, name, "held", data={"holder": holder}, expires_at=store.clock() + ttl_s)
    if record is None:
        yield False
        return
    try:
        yield True
    finally:
        store.backend.delete(LEASE, name, expected_version=record.version)
