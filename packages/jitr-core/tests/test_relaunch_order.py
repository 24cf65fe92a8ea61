"""The order of candidates for a job whose runner exited without taking it: the chain resumes
after the candidate that failed, wraps round and leaves it out; the cloud tokens' indexes stay."""

from __future__ import annotations

from jitr_core.services.candidates import candidate_key, fallback_chain, relaunch_order
from jitr_core.settings import Pool

POOL = Pool("linux", frozenset({"self-hosted"}), ("m7.large", "m6.large"), placements=("zone-a", "zone-b"), spot=True)
CHAIN = list(fallback_chain(POOL))


def test_the_chain_resumes_after_the_failed_candidate_and_leaves_it_out() -> None:
    failed = candidate_key(*CHAIN[1])
    order = relaunch_order(CHAIN, failed)
    assert [index for index, _ in order] == [*range(2, len(CHAIN)), 0]
    assert all(candidate_key(*candidate) != failed for _, candidate in order)
    assert all(CHAIN[index] == candidate for index, candidate in order)  # indexes of the full chain


def test_the_last_candidate_failing_wraps_round() -> None:
    order = relaunch_order(CHAIN, candidate_key(*CHAIN[-1]))
    assert [index for index, _ in order] == list(range(len(CHAIN) - 1))


def test_no_failure_or_an_unknown_candidate_keeps_the_whole_chain() -> None:
    whole = list(enumerate(CHAIN))
    assert relaunch_order(CHAIN, None) == whole
    assert relaunch_order(CHAIN, "c7.huge/zone-z/spot") == whole  # the pool changed since: no guess
    assert relaunch_order(CHAIN, "") == whole


def test_a_chain_of_one_keeps_its_only_candidate() -> None:
    only = [("m7.large", None, False)]
    assert relaunch_order(only, candidate_key(*only[0])) == [(0, only[0])]


def test_candidate_keys_read_as_the_timeline_writes_them() -> None:
    assert candidate_key("m7.large", "zone-a", True) == "m7.large/zone-a/spot"
    assert candidate_key("m7.large", None, False) == "m7.large/-/on-demand"
