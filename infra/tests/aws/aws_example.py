"""examples/aws applied to moto for a test module: the deployment and how one is made.

The bundle given to Terraform is a small zip (moto stores function code but never runs it); the
tfvars carry a GitHub simulator's App id, API URL and private key, and a webhook secret, so the
secrets Terraform creates hold what the simulator signs and verifies with.
"""

from __future__ import annotations

import secrets
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_flow import LABELS, DeployedFunction, aws_client, deployed_functions
from aws_terraform import Workspace, moto_override, write_tfvars
from conftest import REGION, Network
from jitr_github.simulator import GitHubSimulator


@dataclass
class Deployment:
    endpoint: str
    workspace: Workspace
    tfvars: Path
    outputs: dict[str, Any]
    sim: GitHubSimulator
    webhook_secret: str
    network: Network
    prefix: str
    kinds: Sequence[str]
    destroyed: bool = False

    def client(self, service: str) -> Any:
        return aws_client(service, self.endpoint, REGION)

    def functions(self) -> dict[str, DeployedFunction]:
        return deployed_functions(self.endpoint, f"{self.prefix}-", REGION, kinds=self.kinds)

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            self.workspace.destroy(self.workspace.example, self.tfvars)


def deploy(
    moto_endpoint: str,
    network: Network,
    root: Path,
    prefix: str,
    pool: str,
    kinds: Sequence[str],
    override: str | None = None,
) -> Iterator[Deployment]:
    """Apply the example under ``prefix`` with one pool named ``pool`` (``override``: a Terraform
    override file beside it); yield the deployment, destroyed after."""
    workspace = Workspace(root)
    (workspace.example / "moto_override.tf").write_text(moto_override(moto_endpoint))
    if override is not None:
        (workspace.example / "jitr_override.tf").write_text(override)
    bundle = root / "jitr-aws-lambda.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("README.txt", "moto stores the code and never runs it; the tests run the handlers\n")
    webhook_secret = secrets.token_hex(32)
    with GitHubSimulator() as sim:
        key = root / "app.pem"
        key.write_text(sim.private_key_pem)
        tfvars = write_tfvars(
            root / "test.tfvars.json",
            {
                "region": REGION,
                "name_prefix": prefix,
                "bundle_path": str(bundle),
                "github_app_id": str(sim.app_id),
                "github_api_url": sim.base_url,
                "webhook_secret": webhook_secret,
                "github_app_private_key_path": str(key),
                "vpc_id": network.vpc_id,
                "subnet_ids": list(network.subnet_ids),
                "image": network.image,
                "pool_name": pool,
                "pool_labels": list(LABELS),
                "machine_types": ["m5.large", "m5a.large"],
                "max_runners": 5,
                "secret_recovery_window_days": 0,
                "jitr_settings": {"JITR_REBALANCE_GRACE_S": "0"},
            },
        )
        workspace.init(workspace.example)
        outputs = workspace.apply(workspace.example, tfvars)
        deployed = Deployment(moto_endpoint, workspace, tfvars, outputs, sim, webhook_secret, network, prefix, kinds)
        try:
            yield deployed
        finally:
            deployed.destroy()
