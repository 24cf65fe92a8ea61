"""The runner's exit report on EC2: the tag a runner's teardown puts on its own instance, read back
from the terminated instance by the control plane's listing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from awsworld import World
from jitr_aws.ec2 import RUNNER_EXIT_TAG
from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest


def _name() -> str:
    return f"jitr-linux-x64-{uuid.uuid4().int % 10**9}-1"


def _launch_and_end(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest], report: str | None
) -> str:
    """A VM whose teardown tagged it with ``report`` (None: no tag) and then terminated it."""
    vm_id = backend.launch_vm(launch_request(_name(), uuid.uuid4().hex)).vm_id
    ec2 = world.client("ec2")
    if report is not None:
        ec2.create_tags(Resources=[vm_id], Tags=[{"Key": RUNNER_EXIT_TAG, "Value": report}])
    ec2.terminate_instances(InstanceIds=[vm_id])
    return vm_id


def test_a_terminated_instance_with_its_exit_report_is_listed_as_ended(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    no_job = _launch_and_end(backend, world, launch_request, "no-job")
    ran = _launch_and_end(backend, world, launch_request, "job")
    silent = _launch_and_end(backend, world, launch_request, None)
    listed = {vm.vm_id: vm for vm in backend.list_vms()}
    assert (listed[no_job].running, listed[no_job].runner_exit) == (False, "no-job")
    assert (listed[ran].running, listed[ran].runner_exit) == (False, "job")
    assert listed[no_job].runner_name.startswith("jitr-linux-x64-")
    assert silent not in listed  # a terminated instance without a report is gone, as before


def test_a_running_instance_reports_nothing_and_a_hostile_report_is_ignored(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    vm_id = backend.launch_vm(launch_request(_name(), uuid.uuid4().hex)).vm_id
    [vm] = [vm for vm in backend.list_vms() if vm.vm_id == vm_id]
    assert (vm.running, vm.runner_exit) == (True, None)
    world.client("ec2").create_tags(Resources=[vm_id], Tags=[{"Key": RUNNER_EXIT_TAG, "Value": "$(reboot)"}])
    [vm] = [vm for vm in backend.list_vms() if vm.vm_id == vm_id]
    assert vm.runner_exit is None  # only "job" or "no-job" is a report
    backend.terminate_vm(vm_id)
