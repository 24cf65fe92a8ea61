"""``terraform apply`` of examples/aws with its one pool on ``handoff = "metadata"`` (an override of
the example's module call), against moto: no broker at all, and the JIT config in the VM's user
data. Its own module, so that it applies beside ``test_terraform_apply``'s deployment, not after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aws_example import Deployment, deploy
from aws_flow import KINDS, assert_covered, load_reasons, role_actions, run_flow
from conftest import REGION, Network
from jitr_core.settings import Settings

METADATA_PREFIX = "jitr-md"
METADATA_POOL = "linux-md"  # another runner name than the broker deployment's for the same job id
# The example's module call with its one pool on handoff = "metadata" (an override file: the
# example itself is what users copy, and leaves handoff at its default).
METADATA_OVERRIDE = """module "jitr" {
  pools = [
    {
      name          = var.pool_name
      labels        = var.pool_labels
      machine_types = var.machine_types
      subnet_ids    = var.subnet_ids
      image         = var.image
      disk_gb       = var.disk_gb
      max_runners   = var.max_runners
      handoff       = "metadata"
    },
  ]
}
"""


@pytest.fixture(scope="module")
def metadata_deployment(
    moto_endpoint: str, network: Network, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """examples/aws with its one pool on handoff = "metadata": a deployment without a broker."""
    root = tmp_path_factory.mktemp("tf-apply-metadata")
    yield from deploy(moto_endpoint, network, root, METADATA_PREFIX, METADATA_POOL, KINDS, override=METADATA_OVERRIDE)


def test_with_every_pool_on_metadata_there_is_no_broker(metadata_deployment: Deployment) -> None:
    functions = metadata_deployment.functions()  # exactly the five
    environment = functions["webhook"].environment

    assert all("JITR_BROKER_URL" not in f.environment for f in functions.values())
    assert [p["handoff"] for p in json.loads(environment["JITR_POOLS"])] == ["metadata"]
    [pool] = Settings.from_env(environment).pools
    assert (pool.name, pool.handoff) == (METADATA_POOL, "metadata")
    apis = metadata_deployment.client("apigatewayv2").get_apis()["Items"]
    assert [a["Name"] for a in apis if a["Name"].startswith(METADATA_PREFIX)] == []
    roles = metadata_deployment.client("iam").list_roles()["Roles"]
    assert f"{METADATA_PREFIX}-broker" not in {r["RoleName"] for r in roles}
    assert sorted(metadata_deployment.outputs["function_role_arns"]) == sorted(KINDS)


def test_a_metadata_job_finds_its_jit_config_in_the_user_data(metadata_deployment: Deployment) -> None:
    """The whole flow with the JIT config in the VM's user data; each role allows exactly what its function calls."""
    functions = metadata_deployment.functions()
    flow = run_flow(
        metadata_deployment.endpoint, functions, metadata_deployment.sim,
        webhook_secret=metadata_deployment.webhook_secret, region=REGION,
    )  # fmt: skip

    assert flow.instance_tags["jitr:deployment"] == METADATA_PREFIX
    assert metadata_deployment.sim.job(flow.job_id).status == "completed"
    allowed = {kind: role_actions(metadata_deployment.endpoint, f.role_name, REGION) for kind, f in functions.items()}
    assert_covered(flow.calls, allowed, load_reasons())
    metadata_deployment.destroy()
