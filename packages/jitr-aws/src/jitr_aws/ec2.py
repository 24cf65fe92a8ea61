"""Runner VMs on EC2: one instance per launch request, found again by its idempotency token.

EC2 deduplicates ``RunInstances`` calls that carry the same ``ClientToken``. The instance is also
tagged with the token and looked up before launching, so a retried launch finds its instance even
where ``ClientToken`` is not honoured (moto, which the tests run against, ignores it).
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from jitr_core.errors import BackendError, CapacityError, LaunchError, SettingsError
from jitr_core.model import LaunchRequest, LaunchResult, VMInfo

from .clients import client
from .config import PROVIDER, USER_DATA_LIMIT, AwsConfig, VMShape, vm_shape
from .faults import CAPACITY_CODES, backend_error, error_code, error_text, is_transient

logger = logging.getLogger("jitr.aws.ec2")
T = TypeVar("T")

MANAGED_BY_TAG = ("managed-by", "jitr")
RUNNER_TAG = "jitr-runner"
POOL_TAG = "jitr-pool"
RUNNER_EXIT_TAG = "jitr-runner-exit"  # the startup script's exit report: "job" or "no-job"
TOKEN_TAG = "jitr-client-token"  # noqa: S105 - a tag key, not a password
LAUNCH_ATTEMPTS = 3
LISTED_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
RUNNING_STATES = frozenset({"pending", "running"})
_GONE_STATES = frozenset({"shutting-down", "terminated"})
_SSM_IMAGE = "resolve:ssm:"


def launch(request: LaunchRequest, config: AwsConfig) -> LaunchResult:
    """Launch the instance for ``request``, or return the one its idempotency token already launched."""
    size = len(request.startup_script.encode())
    if size > USER_DATA_LIMIT:
        raise LaunchError(
            f"startup script for runner {request.runner_name} is {size} bytes; "
            f"EC2 accepts at most {USER_DATA_LIMIT} bytes of user data"
        )
    try:
        shape = vm_shape(request.options, lambda key: f"pool {request.pool!r} option {key!r}", config.vm)
    except SettingsError as exc:
        raise LaunchError(str(exc)) from None
    ec2 = client("ec2", config)
    existing = _find_by_token(ec2, request)
    if existing is not None:
        logger.info(
            "ec2 instance %s already launched for runner %s",
            existing["InstanceId"],
            request.runner_name,
            extra={"runner_name": request.runner_name, "vm_id": existing["InstanceId"]},
        )
        return _result(existing, request)
    params = _run_instances_params(request, config, shape, _root_device(ec2, request, shape))
    instance = _run_instances(request, client("ec2", config, retries=False), params)
    logger.info(
        "ec2 launched %s for runner %s",
        instance["InstanceId"],
        request.runner_name,
        extra={
            "runner_name": request.runner_name,
            "vm_id": instance["InstanceId"],
            "machine_type": request.machine_type,
            "spot": request.spot,
        },
    )
    return _result(instance, request)


def _run_instances_params(
    request: LaunchRequest, config: AwsConfig, shape: VMShape, root_device: str | None
) -> dict[str, Any]:
    """The ``RunInstances`` request: IMDSv2 only, terminate on shutdown, no public IP unless configured."""
    if not request.image and not shape.launch_template:
        raise LaunchError(f"pool {request.pool!r} has neither an image nor an aws launch_template")
    tags = [{"Key": k, "Value": v} for k, v in _tags(request, config).items()]
    interface: dict[str, Any] = {
        "DeviceIndex": 0,
        "AssociatePublicIpAddress": shape.associate_public_ip,
        "DeleteOnTermination": True,
    }
    if request.placement:
        interface["SubnetId"] = request.placement
    if shape.security_group_ids:
        interface["Groups"] = list(shape.security_group_ids)
    params: dict[str, Any] = {
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceType": request.machine_type,
        "UserData": request.startup_script,
        "ClientToken": request.idempotency_token,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "NetworkInterfaces": [interface],
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
    }
    if request.image:
        params["ImageId"] = request.image
    if shape.launch_template:
        template, _, version = shape.launch_template.partition(":")
        id_or_name = "LaunchTemplateId" if template.startswith("lt-") else "LaunchTemplateName"
        params["LaunchTemplate"] = {id_or_name: template, "Version": version or "$Default"}
    if request.spot:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    if shape.instance_profile:
        arn_or_name = "Arn" if shape.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {arn_or_name: shape.instance_profile}
    if shape.key_name:
        params["KeyName"] = shape.key_name
    if root_device:
        params["BlockDeviceMappings"] = [
            {
                "DeviceName": root_device,
                "Ebs": {"VolumeSize": request.disk_gb, "VolumeType": "gp3", "DeleteOnTermination": True},
            }
        ]
    return params


def terminate(vm_id: str, config: AwsConfig) -> bool:
    """Terminate an instance; True also when it is already terminated or unknown."""
    ec2 = client("ec2", config)
    try:
        ec2.terminate_instances(InstanceIds=[vm_id])
    except (ClientError, BotoCoreError) as exc:
        # Terminating a terminated instance succeeds on EC2; moto answers with an error instead.
        if error_code(exc) == "InvalidInstanceID.NotFound" or _is_gone(ec2, vm_id):
            return True
        raise backend_error("EC2", "TerminateInstances", exc, vm_id) from exc
    logger.info("ec2 terminated %s", vm_id, extra={"vm_id": vm_id})
    return True


def list_vms(config: AwsConfig) -> list[VMInfo]:
    """Every instance of this deployment not yet terminated, across all pages.

    An instance is ours when it is tagged ``managed-by=jitr`` and carries every configured extra
    tag (``[aws] tags``), so two deployments in one account and region that differ in a tag (a
    deployment name) never see, and so never reap, each other's VMs.

    Terminated instances are listed too (not running) when their startup script tagged them with
    its exit report, which EC2 keeps readable for about an hour after termination.
    """
    ec2 = client("ec2", config)
    ours = [
        {"Name": f"tag:{MANAGED_BY_TAG[0]}", "Values": [MANAGED_BY_TAG[1]]},
        *({"Name": f"tag:{key}", "Values": [value]} for key, value in _deployment_tags(config).items()),
    ]
    listings = (
        [*ours, {"Name": "instance-state-name", "Values": list(LISTED_STATES)}],
        [
            *ours,
            {"Name": "instance-state-name", "Values": ["terminated"]},
            {"Name": "tag-key", "Values": [RUNNER_EXIT_TAG]},
        ],
    )
    vms: list[VMInfo] = []
    try:
        for filters in listings:
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=filters, PaginationConfig={"PageSize": 1000}
            ):
                for reservation in page.get("Reservations", []):
                    vms.extend(_vm_info(instance) for instance in reservation.get("Instances", []))
    except (ClientError, BotoCoreError) as exc:
        raise backend_error("EC2", "DescribeInstances", exc, "managed instances") from exc
    return vms


def _vm_info(instance: Mapping[str, Any]) -> VMInfo:
    tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
    return VMInfo(
        vm_id=instance["InstanceId"],
        runner_name=tags.get(RUNNER_TAG, ""),
        pool=tags.get(POOL_TAG, ""),
        provider=PROVIDER,
        created_at=instance["LaunchTime"].timestamp(),
        running=instance["State"]["Name"] in RUNNING_STATES,
        runner_exit=tags.get(RUNNER_EXIT_TAG) if tags.get(RUNNER_EXIT_TAG) in ("job", "no-job") else None,
    )


def _deployment_tags(config: AwsConfig) -> dict[str, str]:
    """The configured extra tags every launch keeps as given (``_tags`` overrides jitr's own keys)."""
    reserved = {"Name", RUNNER_TAG, POOL_TAG, TOKEN_TAG, MANAGED_BY_TAG[0]}
    return {key: value for key, value in config.tags if key not in reserved and not key.startswith("jitr-")}


def _tags(request: LaunchRequest, config: AwsConfig) -> dict[str, str]:
    """Configured extra tags, then core's labels, then the tags jitr relies on (never overridden)."""
    tags = dict(config.tags)
    tags.update(request.labels)
    tags["Name"] = tags[RUNNER_TAG] = request.runner_name
    tags[POOL_TAG] = request.pool
    tags[TOKEN_TAG] = request.idempotency_token
    tags[MANAGED_BY_TAG[0]] = MANAGED_BY_TAG[1]
    return tags


def _find_by_token(ec2: Any, request: LaunchRequest) -> Mapping[str, Any] | None:
    answer = _call(
        request,
        ec2.describe_instances,
        Filters=[
            {"Name": f"tag:{TOKEN_TAG}", "Values": [request.idempotency_token]},
            {"Name": f"tag:{MANAGED_BY_TAG[0]}", "Values": [MANAGED_BY_TAG[1]]},
        ],
    )
    instances = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
    return min(instances, key=lambda i: i["LaunchTime"]) if instances else None


def _root_device(ec2: Any, request: LaunchRequest, shape: VMShape) -> str | None:
    """The device to size to ``disk_gb``: configured, or read from the image (None: the template decides)."""
    if shape.root_device_name:
        return shape.root_device_name
    if not request.image:
        return None
    if request.image.startswith(_SSM_IMAGE):
        raise LaunchError(
            f"pool {request.pool!r} uses image {request.image!r}; set the aws root_device_name so its "
            "root volume can be sized"
        )
    return _call(request, _image_root_device, ec2=ec2, image_id=request.image)


@functools.lru_cache(maxsize=64)
def _image_root_device(ec2: Any, image_id: str) -> str:
    images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    if not images or not images[0].get("RootDeviceName"):
        raise LaunchError(f"image {image_id!r} does not exist or has no root device")
    return str(images[0]["RootDeviceName"])


def _is_gone(ec2: Any, vm_id: str) -> bool:
    try:
        answer = ec2.describe_instances(InstanceIds=[vm_id])
    except ClientError as exc:
        return error_code(exc) == "InvalidInstanceID.NotFound"
    except BotoCoreError:
        return False
    states = [i["State"]["Name"] for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
    return all(state in _GONE_STATES for state in states)


def _result(instance: Mapping[str, Any], request: LaunchRequest) -> LaunchResult:
    return LaunchResult(
        vm_id=instance["InstanceId"],
        provider=PROVIDER,
        machine_type=instance.get("InstanceType", request.machine_type),
        placement=instance.get("SubnetId") or request.placement,
        spot=instance.get("InstanceLifecycle") == "spot",
    )


def _run_instances(request: LaunchRequest, ec2: Any, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """RunInstances, retried here only for transient failures: a capacity error moves the fallback
    chain on at once (botocore would retry its HTTP 500 three times). The client token makes a
    retry safe."""
    for attempt in range(LAUNCH_ATTEMPTS):
        try:
            instances: list[Mapping[str, Any]] = _call(request, ec2.run_instances, **params)["Instances"]
            return instances[0]
        except (CapacityError, LaunchError):
            raise
        except BackendError:
            if attempt + 1 == LAUNCH_ATTEMPTS:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def _call(request: LaunchRequest, operation: Callable[..., T], **params: Any) -> T:
    """Call EC2 for ``request``; a failure is re-raised as a jitr error with no link to the botocore one."""
    try:
        return operation(**params)
    except (ClientError, BotoCoreError) as exc:
        failure = _launch_error(exc, request)
    raise failure  # outside the handler: no __context__ holding AWS's text, which may echo parameters


def _launch_error(exc: Exception, request: LaunchRequest) -> BackendError:
    """CapacityError (try the next candidate), BackendError (try later) or LaunchError (give up)."""
    code = error_code(exc)
    market = "spot" if request.spot else "on-demand"
    where = f"runner {request.runner_name} ({request.machine_type} {market} in {request.placement or 'default subnet'})"
    text = error_text(exc)
    if _quotes_user_data(text, request.startup_script):
        text = f"{code}: (message withheld: it quotes the user data)"
    if code in CAPACITY_CODES:
        return CapacityError(f"EC2 has no capacity for {where}: {text}", code)
    if is_transient(exc):
        return BackendError(f"EC2 failed to launch {where}, may pass if retried: {text}")
    return LaunchError(f"EC2 refused to launch {where}: {text}")


def _quotes_user_data(text: str, user_data: str) -> bool:
    """True if AWS's message quotes the user data (which holds the JIT config) in plain or base64 form."""
    encoded = base64.b64encode(user_data.encode()).decode()
    quoted = [line.strip() for line in user_data.splitlines() if len(line.strip()) >= 8]
    return bool(encoded and encoded[:16] in text) or any(line in text for line in quoted)
