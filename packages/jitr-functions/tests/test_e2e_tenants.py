"""Several App installations side by side (invariant 9): one tenant's failing GitHub calls do not
stall another tenant's jobs."""

from __future__ import annotations

import pytest
from e2e_support import POOL, assert_one_vm_per_attempt, describe, queue_jobs, wait_completed, wait_for

TENANTS = {"octo-org": ["api", "web"], "mona": ["dotfiles", "notes"]}
MINT = "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig"


@pytest.mark.parametrize("handoff", ["broker", "metadata"])
@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, 60)], ids=["server-errors", "rate-limited"])
def test_one_tenants_github_errors_do_not_stall_another(e2e_sandbox, status, retry_after, handoff):
    """mona's repositories answer 5xx (or a 60 s secondary rate limit) to every call. Once both
    scale-up workers (metadata: they mint) or the broker (its VMs ask for their configs) have met
    mona's errors, octo-org's jobs are queued: they must complete well before mona's retry-after
    has passed."""
    sandbox = e2e_sandbox(pools=[{**POOL, "handoff": handoff}], installations=TENANTS)
    sandbox.sim.fail_next(1_000_000, status, path_contains="/repos/mona/", retry_after=retry_after)
    troubled = queue_jobs(sandbox, 6, ["mona/dotfiles", "mona/notes"])
    # both workers (one batch each, or one after the visibility timeout) are in mona's calls
    wait_for(lambda: sandbox.sim.call_counts().get(MINT, 0) >= 2, 60, "both workers to call GitHub for mona")

    healthy = queue_jobs(sandbox, 6, ["octo-org/api", "octo-org/web"])

    wait_completed(sandbox, healthy, 60)
    assert all(sandbox.sim.job(j).status == "queued" for j in troubled), describe(sandbox, troubled)
    if handoff == "metadata":  # no config, no launch; a broker pool's VMs wait for theirs
        assert not [name for name in sandbox.vms.launches if any(f"-{j}-" in name for j in troubled)]
    assert_one_vm_per_attempt(sandbox)
    assert all(sandbox.sim.job(j).conclusion == "success" for j in healthy)
