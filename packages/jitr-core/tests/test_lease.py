"""The periodic functions' lease: a holder that died on this machine does not block the next run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.services.lease import lease
from jitr_core.services.records import LEASE, Store
from jitr_core.testing.environment import unavailable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="holders are checked through /proc")


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, text=True)
    yield process
    process.kill()
    process.wait()


def _held_by(store: Store, process: subprocess.Popen[str]) -> None:
    """The lease as ``process`` would have written it: its identity read from /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        started = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[19]
    except OSError as exc:
        unavailable(f"/proc cannot be read here: {exc}")
    holder = f"{boot}:{namespace}:{process.pid}:{started}"
    assert store.create(LEASE, "scaledown", "held", data={"holder": holder}, expires_at=store.clock() + 240)


def test_a_lease_held_by_a_live_process_is_respected(embedded_backend: Backend, other_process) -> None:
    store = Store(embedded_backend)
    _held_by(store, other_process)
    with lease(store, "scaledown", ttl_s=240) as held:
        assert not held


def test_a_lease_whose_holder_was_killed_is_taken_over_at_once(embedded_backend: Backend, other_process) -> None:
    store = Store(embedded_backend)
    _held_by(store, other_process)
    other_process.kill()
    other_process.wait()
    with lease(store, "scaledown", ttl_s=240) as held:
        assert held
        with lease(store, "scaledown", ttl_s=240) as again:  # held by this live process now
            assert not again
    assert embedded_backend.load(LEASE, "scaledown") is None  # released at the end


def test_a_holder_on_another_machine_waits_for_the_ttl(embedded_backend: Backend) -> None:
    store = Store(embedded_backend)
    holder = "00000000-0000-0000-0000-000000000000:pid:[1]:1:1"  # another boot: nothing to check
    assert store.create(LEASE, "scaledown", "held", data={"holder": holder}, expires_at=store.clock() + 240)
    with lease(store, "scaledown", ttl_s=240) as held:
        assert not held
