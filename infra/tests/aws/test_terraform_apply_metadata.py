"""``terraform apply`` of examples/aws with its one pool on ``handoff = "metadata"`` and the webhook
behind API Gateway (an override of the example's module call), against moto: no broker at all,
the JIT config in the VM's user data, and the webhook's HTTP API alone. Its own module, so that it
applies beside ``test_terraform_apply``'s deployment, not after it.
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
# The example's module call with its one pool on handoff = "metadata" and the webhook on API
# Gateway (an override file: the example itself is what users copy, and leaves both at their defaults).
METADATA_OVERRIDE = """module "jitr" {
  webhook_endpoint = "api_gateway"
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
    """examples/aws with its one pool on handoff = "metadata" and the webhook on API Gateway: no broker."""
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
    assert [a["Name"] for a in apis if a["Name"].startswith(METADATA_PREFIX)] == [f"{METADATA_PREFIX}-webhook"]
    roles = metadata_deployment.client("iam").list_roles()["Roles"]
    assert f"{METADATA_PREFIX}-broker" not in {r["RoleName"] for r in roles}
    assert sorted(metadata_deployment.outputs["function_role_arns"]) == sorted(KINDS)


def test_the_webhook_is_an_http_api_route_to_the_webhook_function(metadata_deployment: Deployment) -> None:
    apigateway = metadata_deployment.client("apigatewayv2")
    [api] = [a for a in apigateway.get_apis()["Items"] if a["Name"] == f"{METADATA_PREFIX}-webhook"]
    [route] = apigateway.get_routes(ApiId=api["ApiId"])["Items"]
    [integration] = apigateway.get_integrations(ApiId=api["ApiId"])["Items"]
    webhook = metadata_deployment.functions()["webhook"]

    assert (route["RouteKey"], route["AuthorizationType"]) == ("POST /webhook", "NONE")
    assert route["Target"] == f"integrations/{integration['IntegrationId']}"
    assert (integration["IntegrationType"], integration["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
    assert webhook.name in integration["IntegrationUri"]
    resources = metadata_deployment.workspace.state_resources(metadata_deployment.workspace.example)
    assert not [r for r in resources if ".aws_lambda_function_url." in r]  # the HTTP API instead
    assert metadata_deployment.outputs["webhook_url"].endswith("/webhook")
    assert "//webhook" not in metadata_deployment.outputs["webhook_url"]


# Where the webhook's HTTP API was before it shared its resources with the broker's (http_apis.tf).
MOVED = {
    'aws_apigatewayv2_api.http["webhook"]': "aws_apigatewayv2_api.webhook[0]",
    'aws_apigatewayv2_integration.http["webhook"]': "aws_apigatewayv2_integration.webhook[0]",
    'aws_apigatewayv2_route.http["webhook"]': "aws_apigatewayv2_route.webhook[0]",
    'aws_cloudwatch_log_group.http_api["webhook"]': "aws_cloudwatch_log_group.api[0]",
    'aws_apigatewayv2_stage.http["webhook"]': "aws_apigatewayv2_stage.webhook[0]",
    'aws_lambda_permission.http_api["webhook"]': "aws_lambda_permission.api[0]",
}


def test_a_webhook_http_api_deployed_before_it_was_shared_is_moved_not_replaced(
    metadata_deployment: Deployment,
) -> None:
    """A state written by the module before the webhook's and the broker's HTTP APIs shared their
    resources (the webhook's at its old addresses) plans to move each of them, and to create or
    destroy nothing."""
    workspace = metadata_deployment.workspace
    example = workspace.example
    for now, before in MOVED.items():
        workspace.run(example, "state", "mv", "-no-color", f"module.jitr.{now}", f"module.jitr.{before}")
    try:
        variables = f"-var-file={metadata_deployment.tfvars}"
        workspace.run(example, "plan", "-no-color", "-refresh=false", variables, "-out=upgrade.tfplan", timeout_s=300)
        plan = json.loads(workspace.run(example, "show", "-json", "upgrade.tfplan").stdout)
    finally:
        for now, before in MOVED.items():
            workspace.run(example, "state", "mv", "-no-color", f"module.jitr.{before}", f"module.jitr.{now}")

    changes = {change["address"]: change for change in plan["resource_changes"]}
    previous = {now: changes[f"module.jitr.{now}"].get("previous_address") for now in MOVED}
    assert previous == {now: f"module.jitr.{before}" for now, before in MOVED.items()}
    replaced = [a for a, c in changes.items() if {"create", "delete"} & set(c["change"]["actions"])]
    assert replaced == []


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
