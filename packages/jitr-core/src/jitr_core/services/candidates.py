"""Launch candidates: the order a pool's (machine type, placement, market) are tried in, how each
is named on timelines, and the launch request for one.

Cold launches (:mod:`.scaleup`), re-launches after a no-job exit (:mod:`.exits`) and warm VMs
(:mod:`.warm`) walk the same chain, with the same idempotency token per index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from ..model import LaunchRequest, idempotency_token
from ..routing import Sizing
from ..settings import Pool

Candidate = tuple[str, str | None, bool]  # (machine type, placement, spot)


def candidate_key(machine_type: str, placement: str | None, spot: bool) -> str:
    """How a launch candidate is named in timelines and on job records: ``type/placement/market``."""
    return f"{machine_type}/{placement or '-'}/{'spot' if spot else 'on-demand'}"


def relaunch_order(chain: Sequence[Candidate], failed: str | None) -> list[tuple[int, Candidate]]:
    """(index, candidate) in the order to try after a runner on ``failed`` exited without a job.

    The chain resumes after the failed candidate and wraps round, leaving it out; a chain of one
    candidate keeps it (there is nothing else to try). Indexes stay those of the full chain, so
    the cloud idempotency tokens do not change.
    """
    indexed = list(enumerate(chain))
    keys = [candidate_key(*candidate) for candidate in chain]
    if failed is None or failed not in keys or len(chain) < 2:
        return indexed
    at = keys.index(failed)
    return indexed[at + 1 :] + indexed[:at]


def fallback_chain(pool: Pool, sizing: Sizing | None = None) -> Iterator[Candidate]:
    """(machine type, placement, spot) in the order to try: types × placements, then on-demand.

    The types are those the job's sizing labels chose, else the pool's; the placements, the
    markets and the caps stay the pool's.
    """
    placements: tuple[str | None, ...] = pool.placements or (None,)
    markets = (True, False) if pool.spot and pool.on_demand_fallback else (pool.spot,)
    machine_types = sizing.machine_types if sizing is not None else pool.machine_types
    for spot in markets:
        for machine_type in machine_types:
            for placement in placements:
                yield machine_type, placement, spot


def launch_request(
    pool: Pool, name: str, candidate: Candidate, index: int, script: str, labels: Mapping[str, str]
) -> LaunchRequest:
    """The request to start ``name`` on the ``index``-th candidate of ``pool``'s chain."""
    machine_type, placement, spot = candidate
    return LaunchRequest(
        runner_name=name,
        pool=pool.name,
        machine_type=machine_type,
        placement=placement,
        spot=spot,
        image=pool.image,
        disk_gb=pool.disk_gb,
        startup_script=script,
        idempotency_token=idempotency_token(name, index),
        max_lifetime_s=pool.max_lifetime_s,
        labels={"jitr-runner": name, "jitr-pool": pool.name, **labels},
        options=pool.options,
    )
