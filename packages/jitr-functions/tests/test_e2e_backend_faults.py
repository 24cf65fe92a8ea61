"""Faults and limits that come from the backends: the VM provider's user-data limit."""

from __future__ import annotations

from e2e_support import POOL, QUIET, dead_letters, queue_jobs, record, running_vms, wait_for
from jitr_core.hookspecs import hookimpl
from jitr_core.settings import Settings
from jitr_functions.sandbox import PROVIDER


class TinyUserData:
    """A VM provider capability: the simulated cloud accepts at most ``limit`` bytes of startup script."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    @hookimpl
    def jitr_user_data_limit(self, provider: str, settings: Settings) -> int | None:
        return self.limit if provider == PROVIDER else None


def test_the_vm_providers_user_data_limit_is_enforced_before_launching(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-tiny-user-data", TinyUserData(1024))])
    assert sandbox.app.backend.user_data_limit() == 1024
    [job] = queue_jobs(sandbox, 1)

    [(_, reason)] = wait_for(lambda: dead_letters(sandbox, "jobs"), 60, "the job message to be dead-lettered")

    # the last try's error, or the receive limit when a slow last try outlived its visibility timeout
    assert "accepts at most 1024" in reason or "max_receive_count" in reason, reason
    assert not sandbox.vms.launches and not running_vms(sandbox)
    assert "the VM provider accepts at most 1024" in sandbox.log_text()
    # every claim and runner registration made for the refused launches was undone
    assert record(sandbox, "runner", f"jitr-linux-{job}-1") is None
    assert not [r for r in sandbox.sim.runners() if r.name.startswith("jitr-")]
