"""infra/gcp/terraform: a pool's sizing settings reach JITR_POOLS as jitr's settings loader reads them."""

from __future__ import annotations

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

from gcp_iac_terraform import evaluate, example_inputs
from jitr_core.settings import MachineSize, Settings


def test_machine_type_labels_and_sizes_render_into_the_pools() -> None:
    inputs = example_inputs()
    first = {
        **inputs["pools"][0],
        "machine_type_labels": ["n2-standard-*", "c3-highcpu-8"],
        "machine_sizes": [{"machine_type": "n2-standard-8", "cpu": 8, "ram": 32}],
    }
    pools = evaluate("local.pool_settings", {**inputs, "pools": [first, *inputs["pools"][1:]]})

    settings = Settings.from_mapping({"pools": pools, "broker_url": "https://broker.example/"})  # handoff: broker
    assert settings.pools[0].machine_type_labels == ("n2-standard-*", "c3-highcpu-8")
    assert settings.pools[0].machine_sizes == (MachineSize("n2-standard-8", 8, 32),)
    assert all("machine_sizes" not in pool for pool in pools[1:])  # left out when unset: jitr's default
