"""EC2 launches as EC2 sees them, and the errors a launch can meet, injected through botocore's events."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from awsworld import World
from botocore.awsrequest import AWSResponse
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_aws.faults import CAPACITY_CODES
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, CapacityError, LaunchError
from jitr_core.model import LaunchRequest
from jitr_core.plugins import JitrPluginManager

JIT_SENTINEL = "JITCONFIG-" + uuid.uuid4().hex


def _describe(world: World, vm_id: str) -> dict[str, Any]:
    reservations = world.client("ec2").describe_instances(InstanceIds=[vm_id])["Reservations"]
    instance: dict[str, Any] = reservations[0]["Instances"][0]
    return instance


def _name() -> str:
    return f"jitr-linux-x64-{uuid.uuid4().int % 10**9}-1"


@contextmanager
def _answer_run_instances(backend: Backend, event: str, handler: Callable[..., Any]) -> Iterator[list[int]]:
    """Make the real EC2 client answer RunInstances through ``handler``; yields the call count."""
    ec2 = client("ec2", aws_config(backend.settings), retries=False)  # the client that launches
    calls: list[int] = []

    def counted(**kwargs: Any) -> Any:
        calls.append(1)
        return handler(**kwargs)

    ec2.meta.events.register_first(f"{event}.ec2.RunInstances", counted, unique_id="jitr-test-fault")
    try:
        yield calls
    finally:
        ec2.meta.events.unregister(f"{event}.ec2.RunInstances", unique_id="jitr-test-fault")


def _error(code: str, message: str, status: int) -> Callable[..., Any]:
    """A ``before-call`` answer: what botocore would have parsed from an EC2 error response."""
    http = AWSResponse("https://ec2.eu-west-1.amazonaws.com/", status, {}, None)
    return lambda **_: (
        http,
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body.read()


def _wire_error(code: str, message: str, status: int) -> Callable[..., Any]:
    """A ``before-send`` answer: EC2's XML error document, parsed (and retried) by botocore itself."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()
    return lambda request, **_: AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))


def test_an_instance_is_launched_locked_down_and_tagged(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    name = _name()
    script = f"#!/bin/bash\necho {JIT_SENTINEL}\n"
    request = launch_request(name, uuid.uuid4().hex, startup_script=script)
    result = backend.launch_vm(request)
    assert (result.provider, result.machine_type, result.placement, result.spot) == (
        "aws",
        "m5.large",
        world.subnet,
        True,
    )

    instance = _describe(world, result.vm_id)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags == {
        "managed-by": "jitr",
        "Name": name,
        "jitr-runner": name,
        "jitr-pool": "linux-x64",
        "jitr-job": "42",
        "jitr-attempt": "1",
        "jitr-client-token": request.idempotency_token,
        "team": "ci",
    }
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
    assert instance["InstanceLifecycle"] == "spot"
    assert instance["ClientToken"] == request.idempotency_token
    assert instance["ImageId"] == world.image and instance["InstanceType"] == "m5.large"
    assert instance["SubnetId"] == world.subnet
    assert "PublicIpAddress" not in instance  # although the subnet maps public IPs on launch
    assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [world.security_group]
    assert instance["IamInstanceProfile"]["Arn"].endswith(":instance-profile/jitr-runner")

    ec2 = world.client("ec2")
    behaviour = ec2.describe_instance_attribute(InstanceId=result.vm_id, Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    user_data = ec2.describe_instance_attribute(InstanceId=result.vm_id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(user_data).decode() == script

    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [result.vm_id]}])["Volumes"]
    assert [v["Size"] for v in volumes] == [40]
    assert {t["Key"]: t["Value"] for t in volumes[0]["Tags"]}["jitr-runner"] == name
    assert instance["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"  # the image's root device
    backend.terminate_vm(result.vm_id)


def test_an_instance_with_termination_protection_is_a_backend_error_naming_it(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    """EC2 refuses to terminate it: the error says which instance and why, and it keeps running
    (scale-down counts the failure and tries again on its next pass)."""
    result = backend.launch_vm(launch_request(_name(), uuid.uuid4().hex))
    ec2 = world.client("ec2")
    ec2.modify_instance_attribute(InstanceId=result.vm_id, DisableApiTermination={"Value": True})

    refused = rf"EC2 TerminateInstances for {result.vm_id} failed: OperationNotPermitted"
    with pytest.raises(BackendError, match=refused):
        backend.terminate_vm(result.vm_id)

    assert _describe(world, result.vm_id)["State"]["Name"] == "running"
    ec2.modify_instance_attribute(InstanceId=result.vm_id, DisableApiTermination={"Value": False})
    assert backend.terminate_vm(result.vm_id)
    assert _describe(world, result.vm_id)["State"]["Name"] in ("shutting-down", "terminated")


def test_on_demand_launch(backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]) -> None:
    result = backend.launch_vm(launch_request(_name(), uuid.uuid4().hex, spot=False))
    assert result.spot is False
    assert "InstanceLifecycle" not in _describe(world, result.vm_id)
    backend.terminate_vm(result.vm_id)


def test_a_public_ip_only_when_configured(
    plugin_manager: Any, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    backend = Backend(plugin_manager, world.settings(associate_public_ip="true"))
    result = backend.launch_vm(launch_request(_name(), uuid.uuid4().hex))
    assert _describe(world, result.vm_id).get("PublicIpAddress")
    backend.terminate_vm(result.vm_id)


def test_pool_options_override_the_aws_settings(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    other = world.client("ec2").create_security_group(GroupName=f"other-{uuid.uuid4().hex[:6]}", Description="x")
    request = launch_request(
        _name(),
        uuid.uuid4().hex,
        options={
            "security_group_ids": [other["GroupId"]],
            "root_device_name": "/dev/sdf",
            "gcp_only_option": "ignored",
        },
    )
    result = backend.launch_vm(request)
    instance = _describe(world, result.vm_id)
    assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [other["GroupId"]]
    assert "/dev/sdf" in [m["DeviceName"] for m in instance["BlockDeviceMappings"]]
    backend.terminate_vm(result.vm_id)


def test_an_invalid_pool_option_is_a_launch_error(
    backend: Backend, launch_request: Callable[..., LaunchRequest]
) -> None:
    with pytest.raises(LaunchError, match="pool 'linux-x64' option 'security_group_ids'"):
        backend.launch_vm(launch_request(_name(), uuid.uuid4().hex, options={"security_group_ids": "default"}))


def test_the_same_token_finds_the_same_instance_although_moto_ignores_client_token(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    token = uuid.uuid4().hex
    first = backend.launch_vm(launch_request(_name(), token))
    # moto launches a second instance for a repeated ClientToken (real EC2 would not) ...
    raw = world.client("ec2").run_instances(
        ImageId=world.image, MinCount=1, MaxCount=1, ClientToken=token, SubnetId=world.subnet
    )["Instances"][0]
    assert raw["InstanceId"] != first.vm_id
    # ... so jitr finds its instance by the token tag before calling RunInstances again.
    with _answer_run_instances(backend, "before-call", _error("ShouldNotBeCalled", "no", 400)) as calls:
        again = backend.launch_vm(launch_request(_name(), token))
    assert again.vm_id == first.vm_id and calls == []
    world.client("ec2").terminate_instances(InstanceIds=[raw["InstanceId"]])
    backend.terminate_vm(first.vm_id)


def test_user_data_over_16_kib_is_refused_before_calling_ec2(
    backend: Backend, launch_request: Callable[..., LaunchRequest]
) -> None:
    name = _name()
    script = "#!/bin/bash\n" + "#" * (16 * 1024)
    refuse = _error("ShouldNotBeCalled", "no", 400)
    with (
        _answer_run_instances(backend, "before-call", refuse) as calls,
        pytest.raises(LaunchError, match="at most 16384 bytes of user data"),
    ):
        backend.launch_vm(launch_request(name, uuid.uuid4().hex, startup_script=script))
    assert calls == []
    assert all(vm.runner_name != name for vm in backend.list_vms())


@pytest.mark.parametrize("code", sorted(CAPACITY_CODES))
def test_capacity_errors_name_their_code(
    code: str, backend: Backend, launch_request: Callable[..., LaunchRequest], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jitr")
    status = 500 if code.startswith("Insufficient") and code != "InsufficientFreeAddressesInSubnet" else 400
    request = launch_request(_name(), uuid.uuid4().hex, startup_script=f"#!/bin/bash\necho {JIT_SENTINEL}\n")
    answer = _error(code, "We currently do not have capacity.", status)
    with _answer_run_instances(backend, "before-call", answer), pytest.raises(CapacityError) as caught:
        backend.launch_vm(request)
    assert caught.value.code == code
    assert request.machine_type in str(caught.value) and request.runner_name in str(caught.value)
    assert JIT_SENTINEL not in str(caught.value) and JIT_SENTINEL not in caplog.text


def test_capacity_error_from_the_wire(backend: Backend, launch_request: Callable[..., LaunchRequest]) -> None:
    answer = _wire_error("VcpuLimitExceeded", "vCPU limit", 400)
    with _answer_run_instances(backend, "before-send", answer), pytest.raises(CapacityError) as caught:
        backend.launch_vm(launch_request(_name(), uuid.uuid4().hex))
    assert caught.value.code == "VcpuLimitExceeded"


def test_throttling_is_retried_then_a_backend_error(
    backend: Backend, launch_request: Callable[..., LaunchRequest]
) -> None:
    answer = _wire_error("RequestLimitExceeded", "Request limit exceeded.", 503)
    with _answer_run_instances(backend, "before-send", answer) as calls, pytest.raises(BackendError) as caught:
        backend.launch_vm(launch_request(_name(), uuid.uuid4().hex))
    assert not isinstance(caught.value, (CapacityError, LaunchError))
    assert "RequestLimitExceeded" in str(caught.value)
    assert len(calls) == 3  # botocore's standard retries, then jitr gives up


def test_other_refusals_are_launch_errors_without_user_data(
    backend: Backend, launch_request: Callable[..., LaunchRequest], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jitr")
    script = f"#!/bin/bash\necho {JIT_SENTINEL}\n"
    encoded = base64.b64encode(script.encode()).decode()
    echo = f"Invalid user data {encoded} for {script}"  # should AWS ever echo the user data back
    answer = _error("InvalidParameterValue", echo, 400)
    with (
        _answer_run_instances(backend, "before-call", answer),
        pytest.raises(LaunchError, match="InvalidParameterValue") as caught,
    ):
        backend.launch_vm(launch_request(_name(), uuid.uuid4().hex, startup_script=script))
    assert not isinstance(caught.value, CapacityError)
    text = str(caught.value) + repr(caught.value.__cause__) + repr(caught.value.__context__)
    assert JIT_SENTINEL not in text and encoded not in text and JIT_SENTINEL not in caplog.text
    assert "withheld" in str(caught.value)


def test_an_unknown_image_is_a_launch_error(backend: Backend, launch_request: Callable[..., LaunchRequest]) -> None:
    with pytest.raises(LaunchError, match="ami-00000000000000000"):
        backend.launch_vm(launch_request(_name(), uuid.uuid4().hex, image="ami-00000000000000000"))


def test_listed_vms_carry_runner_pool_and_launch_time(
    backend: Backend, launch_request: Callable[..., LaunchRequest]
) -> None:
    name = _name()
    result = backend.launch_vm(launch_request(name, uuid.uuid4().hex))
    [vm] = [vm for vm in backend.list_vms() if vm.vm_id == result.vm_id]
    assert (vm.runner_name, vm.pool, vm.provider, vm.running) == (name, "linux-x64", "aws", True)
    assert vm.created_at > 1.6e9
    backend.terminate_vm(result.vm_id)


def test_list_follows_pages_and_ignores_unmanaged_instances(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    ec2 = world.client("ec2")
    unmanaged = ec2.run_instances(ImageId=world.image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    launched = {backend.launch_vm(launch_request(_name(), uuid.uuid4().hex)).vm_id for _ in range(7)}
    events = client("ec2", aws_config(backend.settings)).meta.events
    pages: list[int] = []

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        pages.append(1)
        params["MaxResults"] = 5

    events.register("provide-client-params.ec2.DescribeInstances", small_pages, unique_id="jitr-test-pages")
    try:
        listed = {vm.vm_id for vm in backend.list_vms()}
    finally:
        events.unregister("provide-client-params.ec2.DescribeInstances", unique_id="jitr-test-pages")
    assert launched <= listed and unmanaged not in listed
    assert len(pages) >= 2  # more than one page was read
    for vm_id in launched:
        backend.terminate_vm(vm_id)
    ec2.terminate_instances(InstanceIds=[unmanaged])


def test_terminating_an_unknown_instance_is_fine(backend: Backend) -> None:
    assert backend.terminate_vm("i-0123456789abcdef0")


def test_a_deployment_lists_only_the_vms_carrying_its_tags(
    world: World, plugin_manager: JitrPluginManager, launch_request: Callable[..., LaunchRequest]
) -> None:
    blue = Backend(plugin_manager, world.settings(tags={"jitr:deployment": "blue", "team": "ci"}))
    green = Backend(plugin_manager, world.settings(tags={"jitr:deployment": "green", "team": "ci"}))
    untagged = Backend(plugin_manager, world.settings())
    blue_vm = blue.launch_vm(launch_request(_name(), uuid.uuid4().hex)).vm_id
    green_vm = green.launch_vm(launch_request(_name(), uuid.uuid4().hex)).vm_id
    try:
        assert blue_vm in {vm.vm_id for vm in blue.list_vms()} - {vm.vm_id for vm in green.list_vms()}
        assert green_vm in {vm.vm_id for vm in green.list_vms()} - {vm.vm_id for vm in blue.list_vms()}
        assert {blue_vm, green_vm} <= {vm.vm_id for vm in untagged.list_vms()}  # no extra tags: every jitr VM
    finally:
        blue.terminate_vm(blue_vm)
        green.terminate_vm(green_vm)
