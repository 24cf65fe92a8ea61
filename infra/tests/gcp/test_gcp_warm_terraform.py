"""infra/gcp/terraform: a pool's warm VMs (warm, warm_windows, warm_max_idle_s) reach JITR_POOLS, and
the grants warm pools need (scaledown launches their VMs, the broker deletes their records) are
given where a pool keeps warm VMs, and only there. test_gcp_permissions checks them against the
calls of a run with a warm pool."""

from __future__ import annotations

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

from gcp_iac_terraform import PROJECT_NUMBER, TerraformError, evaluate, example_inputs
from jitr_core.settings import Settings, WarmWindow

WINDOW = {"days": ["mon", "fri"], "start_hour": 8, "end_hour": 18, "count": 2}


def test_warm_settings_render_into_the_pools() -> None:
    inputs = example_inputs()
    first = {**inputs["pools"][0], "handoff": "broker", "warm": 1, "warm_max_idle_s": 1800, "warm_windows": [WINDOW]}
    brokered = {**inputs, "pools": [first, *inputs["pools"][1:]], "project_number": "123456789012"}
    pools = evaluate("local.pool_settings", brokered)

    pool = Settings.from_mapping({"pools": pools, "broker_url": "https://broker.example/"}).pools[0]
    assert (pool.warm, pool.warm_max_idle_s) == (1, 1800)
    assert pool.warm_windows == (WarmWindow(frozenset({"mon", "fri"}), 8, 18, 2),)
    assert all("warm" not in p and "warm_windows" not in p for p in pools[1:])  # unset: jitr's default


@pytest.mark.parametrize("warm", [{"warm": 1}, {"warm_windows": [WINDOW]}])
def test_warm_vms_without_the_broker_handoff_are_refused(warm: dict[str, object]) -> None:
    inputs = example_inputs()
    with pytest.raises(TerraformError, match="needs the broker handoff"):
        pools = [{**inputs["pools"][0], "handoff": "metadata", **warm}]
        evaluate("local.pool_settings", {**inputs, "pools": pools})


def test_a_pool_without_handoff_may_have_warm_vms() -> None:
    """The broker handoff is the default, which warm VMs need."""
    inputs = {**example_inputs(), "project_number": PROJECT_NUMBER}
    pools = evaluate("local.pool_settings", {**inputs, "pools": [{**inputs["pools"][0], "warm": 1}]})
    assert (pools[0]["handoff"], pools[0]["warm"]) == ("broker", 1)


def test_the_broker_gets_an_instance_per_warm_vm() -> None:
    inputs = example_inputs()
    windows = [WINDOW, {**WINDOW, "count": 3}]
    first = {**inputs["pools"][0], "handoff": "broker", "warm": 1, "warm_windows": windows}
    brokered = {**inputs, "pools": [first, *inputs["pools"][1:]], "project_number": "123456789012"}
    plain = {**brokered, "pools": [{**first, "warm": None, "warm_windows": None}, *inputs["pools"][1:]]}
    assert evaluate("local.functions", brokered)["broker"]["max_instances"] == 20 + 3
    assert evaluate("local.functions", plain)["broker"]["max_instances"] == 20


@pytest.mark.parametrize(
    ("warm", "keeps_warm"),
    [
        ({"warm": 1}, True),
        ({"warm_windows": [WINDOW]}, True),
        ({}, False),
        ({"warm_windows": [{**WINDOW, "count": 0}]}, False),
    ],
    ids=["warm", "window", "none", "empty-window"],
)
def test_warm_pools_let_scaledown_launch_and_the_broker_delete_warm_records(
    warm: dict[str, object], keeps_warm: bool
) -> None:
    inputs = {**example_inputs(), "project_number": PROJECT_NUMBER}
    pools = [{**inputs["pools"][0], **warm}, *inputs["pools"][1:]]
    grants = evaluate(
        "{ roles = local.custom_roles, launchers = local.launchers, launch = local.launch_permissions }",
        {**inputs, "pools": pools},
    )
    roles = grants["roles"]
    assert set(grants["launch"]) <= set(roles["scaleup"])
    assert (set(grants["launch"]) <= set(roles["scaledown"])) is keeps_warm
    # the functions given actAs on the runner account
    assert grants["launchers"] == (["scaleup", "scaledown"] if keeps_warm else ["scaleup"])
    assert ("datastore.entities.delete" in roles["broker"]) is keeps_warm
