"""Sizing from labels: which labels choose a machine type, on which pool, and what settings are refused.

A label becomes a machine type only when the pool's allow-list accepts it and it fits the strict
type grammar; every other label leaves the job unserved (so it is ignored at the webhook).
"""

from __future__ import annotations

from typing import Any

import pytest
from jitr_core.errors import SettingsError
from jitr_core.routing import Router, Sizing
from jitr_core.services.candidates import fallback_chain
from jitr_core.settings import MachineSize, Settings

SIZES = [
    {"machine_type": "c6i.large", "cpu": 2, "ram": 4},
    {"machine_type": "c6i.xlarge", "cpu": 4, "ram": 8},
    {"machine_type": "r6i.large", "cpu": 2, "ram": 16},
    {"machine_type": "c6i.4xlarge", "cpu": 16, "ram": 32},
]
SIZED: dict[str, Any] = {
    "name": "sized",
    "labels": ["self-hosted", "linux"],
    "machine_types": ["m6i.large", "m5.large"],
    "placements": ["zone-a", "zone-b"],
    "machine_type_labels": ["c6i.*", "m7i.2xlarge", "t3.?large"],
    "machine_sizes": SIZES,
}


def settings(*pools: dict[str, Any], **extra: Any) -> Settings:
    return Settings.from_mapping({"pools": list(pools), **extra})


def route(labels: list[str], *pools: dict[str, Any]) -> tuple[str | None, Sizing | None]:
    pool, sizing = Router(settings(*(pools or (SIZED,)))).route(labels)
    return (pool.name if pool else None), sizing


# -- routing ------------------------------------------------------------------------------------


def test_a_job_with_the_pools_labels_only_gets_the_pools_types() -> None:
    assert route(["self-hosted", "linux"]) == ("sized", None)


@pytest.mark.parametrize(
    "label", ["c6i.4xlarge", "C6I.4XLARGE", "c6i.metal-32xl", "m7i.2xlarge", "t3.xlarge", "t3.2large"]
)
def test_an_allowed_machine_type_label_sets_the_type(label: str) -> None:
    name, sizing = route(["self-hosted", "linux", label])
    assert name == "sized"
    assert sizing == Sizing((label.lower(),), (label.lower(),))


def test_a_sizing_label_need_not_repeat_the_pools_other_labels() -> None:
    assert route(["self-hosted", "c6i.2xlarge"]) == ("sized", Sizing(("c6i.2xlarge",), ("c6i.2xlarge",)))


@pytest.mark.parametrize(
    "label",
    [
        "m7i.4xlarge",  # not in the allow-list
        "t3.large",  # ? stands for exactly one character
        "c6i.4xlarge; rm -rf /",
        "c6i.4xlarge;rm",
        "../x",
        "c6i../x",
        "c6i.*",  # a pattern is not a type
        "c6i.4xlarge\n",
        "c6i.4xlarge\x00",
        "c6i.4xlarge/../../etc",
        "c6i.$(reboot)",
        "c6i.`id`",
        "c6i." + "x" * 300,  # longer than any machine type
        "c6i.4xlarge é",
        "cpu=0",
        "cpu=-1",
        "cpu=4x",
        "cpu=999999",
        "ram=",
    ],
)
def test_a_label_the_pool_does_not_accept_leaves_the_job_unserved(label: str) -> None:
    assert route(["self-hosted", "linux", label]) == (None, None)
    admission = Router(settings(SIZED)).admit_parts("o/r", "o", ["self-hosted", "linux", label], True)
    assert admission.pool is None
    assert "does not accept" in admission.reason


def test_two_machine_type_labels_are_not_a_sizing() -> None:
    assert route(["self-hosted", "c6i.large", "c6i.xlarge"]) == (None, None)


def test_a_type_and_a_cpu_label_together_are_not_a_sizing() -> None:
    assert route(["self-hosted", "c6i.large", "cpu=2"]) == (None, None)


def test_cpu_and_ram_resolve_to_the_smallest_fitting_types_first() -> None:
    """Smallest: fewest vCPUs, then least memory."""
    assert route(["self-hosted", "cpu=4"])[1] == Sizing(("cpu=4",), ("c6i.xlarge", "c6i.4xlarge"))
    assert route(["self-hosted", "ram=10"])[1] == Sizing(("ram=10",), ("r6i.large", "c6i.4xlarge"))
    both = route(["self-hosted", "linux", "cpu=2", "ram=8"])[1]
    assert both == Sizing(("cpu=2", "ram=8"), ("r6i.large", "c6i.xlarge", "c6i.4xlarge"))
    assert route(["self-hosted", "cpu=1"])[1] == Sizing(
        ("cpu=1",), ("c6i.large", "r6i.large", "c6i.xlarge", "c6i.4xlarge")
    )


def test_cpu_or_ram_beyond_every_size_leaves_the_job_unserved() -> None:
    assert route(["self-hosted", "cpu=17"]) == (None, None)
    assert route(["self-hosted", "cpu=2", "ram=64"]) == (None, None)


def test_a_repeated_or_conflicting_cpu_label_is_not_a_sizing() -> None:
    assert route(["self-hosted", "cpu=2", "cpu=4"]) == (None, None)
    assert route(["self-hosted", "cpu=2", "ram=4", "ram=8"]) == (None, None)


def test_duplicated_labels_of_the_job_count_once() -> None:
    assert route(["self-hosted", "c6i.large", "C6I.LARGE", "self-hosted"]) == (
        "sized",
        Sizing(("c6i.large",), ("c6i.large",)),
    )


def test_a_pool_without_sizing_settings_accepts_no_sizing_label() -> None:
    plain = {"name": "plain", "labels": ["self-hosted", "linux"], "machine_types": ["m5.large"]}
    assert route(["self-hosted", "linux", "c6i.large"], plain) == (None, None)
    assert route(["self-hosted", "linux", "cpu=2"], plain) == (None, None)
    reason = Router(settings(plain)).admit_parts("o/r", "o", ["self-hosted", "c6i.large"], True).reason
    assert reason == "no pool serves labels ['c6i.large', 'self-hosted']"


def test_a_pool_naming_the_label_outright_wins_over_one_sizing_from_it() -> None:
    dedicated = {"name": "zz-big", "labels": ["self-hosted", "linux", "c6i.4xlarge"], "machine_types": ["c6i.4xlarge"]}
    assert route(["self-hosted", "linux", "c6i.4xlarge"], SIZED, dedicated) == ("zz-big", None)
    assert route(["self-hosted", "linux", "c6i.2xlarge"], SIZED, dedicated)[0] == "sized"


def test_priority_wins_over_sizing_and_specificity() -> None:
    dedicated = {"name": "big", "labels": ["self-hosted", "linux", "c6i.4xlarge"], "machine_types": ["c6i.4xlarge"]}
    preferred = {**SIZED, "name": "preferred", "priority": 5}
    assert route(["self-hosted", "linux", "c6i.4xlarge"], dedicated, preferred) == (
        "preferred",
        Sizing(("c6i.4xlarge",), ("c6i.4xlarge",)),
    )


def test_the_most_specific_sizing_pool_wins_then_the_name() -> None:
    wider = {**SIZED, "name": "wider", "labels": ["self-hosted", "linux", "x64"]}
    assert route(["self-hosted", "linux", "c6i.large"], SIZED, wider)[0] == "sized"
    assert route(["self-hosted", "linux", "x64", "c6i.large"], SIZED, wider)[0] == "wider"
    twin = {**SIZED, "name": "another"}
    assert route(["self-hosted", "linux", "c6i.large"], SIZED, twin)[0] == "another"


def test_a_sizing_label_of_one_pool_does_not_open_another() -> None:
    other = {
        "name": "gpu",
        "labels": ["self-hosted", "gpu"],
        "machine_types": ["g5.xlarge"],
        "machine_type_labels": ["g5.*"],
    }
    assert route(["self-hosted", "gpu", "c6i.large"], SIZED, other) == (None, None)
    assert route(["self-hosted", "gpu", "g5.2xlarge"], SIZED, other) == (
        "gpu",
        Sizing(("g5.2xlarge",), ("g5.2xlarge",)),
    )


def test_public_repositories_stay_refused_when_sized() -> None:
    admission = Router(settings(SIZED)).admit_parts("o/r", "o", ["self-hosted", "c6i.large"], False)
    assert admission.pool is None and "public" in admission.reason


def test_the_chain_walks_the_labelled_type_over_placements_then_on_demand() -> None:
    pool = settings(SIZED).pools[0]
    chain = list(fallback_chain(pool, Sizing(("c6i.4xlarge",), ("c6i.4xlarge",))))
    assert chain == [
        ("c6i.4xlarge", "zone-a", True),
        ("c6i.4xlarge", "zone-b", True),
        ("c6i.4xlarge", "zone-a", False),
        ("c6i.4xlarge", "zone-b", False),
    ]
    assert [t for t, _, _ in fallback_chain(pool)][:2] == ["m6i.large", "m6i.large"]


def test_on_demand_only_pools_keep_their_market_when_sized() -> None:
    pool = settings({**SIZED, "spot": False}).pools[0]
    assert list(fallback_chain(pool, Sizing(("cpu=4",), ("c6i.xlarge", "c6i.4xlarge")))) == [
        ("c6i.xlarge", "zone-a", False),
        ("c6i.xlarge", "zone-b", False),
        ("c6i.4xlarge", "zone-a", False),
        ("c6i.4xlarge", "zone-b", False),
    ]


# -- settings -----------------------------------------------------------------------------------


def test_sizing_settings_load_from_toml(tmp_path: Any) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text(
        """
[[pools]]
name = "linux"
labels = ["self-hosted", "linux"]
machine_types = ["m6i.large"]
machine_type_labels = ["c6i.*", "m7i.2xlarge"]
machine_sizes = [
  { machine_type = "c6i.large", cpu = 2, ram = 4 },
  { machine_type = "c6i.xlarge", cpu = 4, ram = 8 },
]
"""
    )
    pool = Settings.from_toml(path).pools[0]
    assert pool.machine_type_labels == ("c6i.*", "m7i.2xlarge")
    assert pool.machine_sizes == (MachineSize("c6i.large", 2, 4), MachineSize("c6i.xlarge", 4, 8))


def test_sizing_settings_load_from_the_environment() -> None:
    pools = '[{"name": "linux", "labels": ["self-hosted"], "machine_types": ["n2-standard-2"], '
    pools += '"machine_type_labels": ["n2-standard-*"], "machine_sizes": [{"machine_type": "n2-standard-8", '
    pools += '"cpu": 8, "ram": 32}]}]'
    pool = Settings.from_env({"JITR_POOLS": pools}).pools[0]
    assert pool.machine_type_labels == ("n2-standard-*",)
    assert pool.machine_sizes == (MachineSize("n2-standard-8", 8, 32),)


def test_pools_without_sizing_settings_accept_none() -> None:
    pool = settings({"name": "p", "labels": ["self-hosted"], "machine_types": ["m"]}).pools[0]
    assert pool.machine_type_labels == () and pool.machine_sizes == ()


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["*"], "invalid pattern '*'"),
        (["?6i.large"], "invalid pattern '?6i.large'"),
        (["C6I.*"], "invalid pattern 'C6I.*'"),
        (["c6i.[0-9]xlarge"], "invalid pattern"),
        (["../x"], "invalid pattern '../x'"),
        (["c6i..*"], "invalid pattern"),
        (["c6i.4xlarge; rm"], "invalid pattern"),
        (["c6i/*"], "invalid pattern"),
        (["c" * 65], "invalid pattern"),
        ([""], "invalid pattern ''"),
        ([7], "invalid pattern 7"),
        (["c6i.*\n"], "invalid pattern"),
        (["c6i.*", "c6i.*"], "lists 'c6i.*' twice"),
        ({"c6i": 1}, "must be a list"),
    ],
)
def test_bad_machine_type_patterns_are_refused_at_load(patterns: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=r"pools\[0\]\.machine_type_labels") as info:
        settings({**SIZED, "machine_type_labels": patterns})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"c6i.large": [2, 4]}, "must be a list"),
        (["c6i.large"], "must be a table with exactly machine_type, cpu and ram"),
        ([{"machine_type": "c6i.large", "cpu": 2}], "exactly machine_type, cpu and ram"),
        ([{"machine_type": "c6i.large", "cpu": 2, "ram": 4, "gpu": 1}], "exactly machine_type, cpu and ram"),
        (
            [{"machine_type": "../x", "cpu": 2, "ram": 4}],
            "machine_sizes[0].machine_type in mapping is not a machine type",
        ),
        ([{"machine_type": "c6i.*", "cpu": 2, "ram": 4}], "is not a machine type"),
        ([{"machine_type": "c6i.large; rm", "cpu": 2, "ram": 4}], "is not a machine type"),
        ([{"machine_type": 3, "cpu": 2, "ram": 4}], "is not a machine type"),
        ([{"machine_type": "c6i.large\n", "cpu": 2, "ram": 4}], "is not a machine type"),
        ([{"machine_type": "c6i.large", "cpu": 0, "ram": 4}], "cpu in mapping must be at least 1"),
        ([{"machine_type": "c6i.large", "cpu": 2, "ram": -4}], "ram in mapping must be at least 1"),
        ([{"machine_type": "c6i.large", "cpu": 2, "ram": 0.5}], "ram in mapping must be a whole number"),
        ([{"machine_type": "c6i.large", "cpu": True, "ram": 4}], "cpu in mapping must be a whole number"),
        ([SIZES[0], {**SIZES[0], "cpu": 8}], "lists 'c6i.large' twice"),
    ],
)
def test_bad_machine_size_tables_are_refused_at_load(sizes: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=r"pools\[0\]\.machine_sizes") as info:
        settings({**SIZED, "machine_sizes": sizes})
    assert message in str(info.value)


def test_a_bad_sizing_setting_from_the_environment_names_the_variable() -> None:
    pools = '[{"name": "p", "labels": ["self-hosted"], "machine_types": ["m"], "machine_type_labels": ["*"]}]'
    with pytest.raises(SettingsError, match=r"JITR_POOLS\[0\]\.machine_type_labels has an invalid pattern '\*'"):
        Settings.from_env({"JITR_POOLS": pools})
