"""Label routing: subset match, case-insensitive, self-hosted required, most specific wins."""

from __future__ import annotations

from jitr_core.routing import Router
from jitr_core.settings import Settings


def router(**extra: object) -> Router:
    return Router(
        Settings.from_mapping(
            {
                "pools": [
                    {"name": "linux", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m"]},
                    {"name": "linux-big", "labels": ["self-hosted", "linux", "x64", "big"], "machine_types": ["m"]},
                    {
                        "name": "arm",
                        "labels": ["self-hosted", "linux", "arm64"],
                        "machine_types": ["m"],
                        "allow_public": True,
                    },
                    {
                        "name": "preferred",
                        "labels": ["self-hosted", "linux", "x64", "fast", "big"],
                        "machine_types": ["m"],
                        "priority": 5,
                    },
                ],
                **extra,
            }
        )
    )


def test_labels_match_case_insensitively() -> None:
    pool = router().pool_for(["Self-Hosted", "LINUX", "ARM64"])
    assert pool is not None and pool.name == "arm"


def test_the_most_specific_pool_wins() -> None:
    pool = router().pool_for(["self-hosted", "x64"])
    assert pool is not None and pool.name == "preferred"  # an explicit priority comes first
    unprioritised = Router(
        Settings.from_mapping(
            {
                "pools": [
                    {"name": "big", "labels": ["self-hosted", "linux", "x64", "big"], "machine_types": ["m"]},
                    {"name": "small", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m"]},
                ]
            }
        )
    )
    pool = unprioritised.pool_for(["self-hosted", "x64"])
    assert pool is not None and pool.name == "small"  # then the fewest labels the job did not ask for
    pool = unprioritised.pool_for(["self-hosted", "big"])
    assert pool is not None and pool.name == "big"


def test_self_hosted_is_required() -> None:
    assert router().pool_for(["linux", "x64"]) is None


def test_a_label_no_pool_has_matches_nothing() -> None:
    assert router().pool_for(["self-hosted", "linux", "windows"]) is None


def test_allow_lists_and_public_repositories() -> None:
    r = router(allowed_owners=["octo-org"])
    assert r.admit_parts("octo-org/repo", "octo-org", ["self-hosted", "linux"], True).pool is not None
    refused = r.admit_parts("evil/repo", "evil", ["self-hosted", "linux"], True)
    assert refused.pool is None and "not in the allowed" in refused.reason
    public = router().admit_parts("o/r", "o", ["self-hosted", "linux", "x64"], False)
    assert public.pool is None and "public" in public.reason
    assert router().admit_parts("o/r", "o", ["self-hosted", "arm64"], False).pool is not None


def test_allowed_repositories_admit_single_repos() -> None:
    r = router(allowed_repos=["Octo-Org/Hello"])
    assert r.allowed("octo-org/hello", "octo-org")
    assert not r.allowed("octo-org/other", "octo-org")
