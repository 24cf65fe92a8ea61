"""The runner's exit report on GCE: the guest attribute a runner's teardown writes on its own
instance, read back by the listing from an instance that is no longer running."""

from __future__ import annotations

import uuid

from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest
from jitr_gcp.testing.backend import gcp_backend, gcp_settings
from jitr_gcp.testing.compute_fake import FakeCompute

ZONE = "us-central1-a"


def _request() -> LaunchRequest:
    name = f"jitr-linux-{uuid.uuid4().int % 10**9}-1"
    return LaunchRequest(
        runner_name=name,
        pool="linux",
        machine_type="e2-standard-4",
        placement=ZONE,
        spot=True,
        image="projects/debian-cloud/global/images/family/debian-12",
        disk_gb=50,
        startup_script="#!/bin/bash\ntrue\n",
        idempotency_token=uuid.uuid4().hex,
        max_lifetime_s=7200,
        labels={"jitr-runner": name, "jitr-pool": "linux", "jitr-job": "1", "jitr-attempt": "1"},
    )


def _listed(backend: Backend, vm_id: str):
    [vm] = [vm for vm in backend.list_vms() if vm.vm_id == vm_id]
    return vm


def test_launches_enable_guest_attributes(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    vm_backend.launch_vm(_request())
    items = {i["key"]: i["value"] for i in fake_compute.inserts[-1]["body"]["metadata"]["items"]}
    assert items["enable-guest-attributes"] == "TRUE"


def test_a_stopped_instance_carries_its_exit_report(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    no_job, ran, silent = (vm_backend.launch_vm(_request()) for _ in range(3))
    fake_compute.set_guest_attribute(ZONE, no_job.vm_id.split("/")[1], "jitr/runner-exit", "no-job")
    fake_compute.set_guest_attribute(ZONE, ran.vm_id.split("/")[1], "jitr/runner-exit", "job")
    fake_compute.set_guest_attribute(ZONE, silent.vm_id.split("/")[1], "other/key", "no-job")
    for vm in (no_job, ran, silent):
        fake_compute.set_status(ZONE, vm.vm_id.split("/")[1], "TERMINATED")

    assert (_listed(vm_backend, no_job.vm_id).running, _listed(vm_backend, no_job.vm_id).runner_exit) == (
        False,
        "no-job",
    )
    assert _listed(vm_backend, ran.vm_id).runner_exit == "job"
    assert _listed(vm_backend, silent.vm_id).runner_exit is None  # another namespace is no report


def test_a_running_instance_is_not_asked_and_a_hostile_report_is_ignored(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    vm = vm_backend.launch_vm(_request())
    name = vm.vm_id.split("/")[1]
    fake_compute.set_guest_attribute(ZONE, name, "jitr/runner-exit", "no-job")
    assert _listed(vm_backend, vm.vm_id).runner_exit is None  # a running instance is not asked
    fake_compute.set_guest_attribute(ZONE, name, "jitr/runner-exit", "$(reboot)")
    fake_compute.set_status(ZONE, name, "TERMINATED")
    assert _listed(vm_backend, vm.vm_id).runner_exit is None  # only "job" or "no-job" is a report


def test_an_exit_report_gce_keeps_failing_to_read_leaves_the_listing_whole(fake_compute: FakeCompute) -> None:
    """The report is a hint: a read GCE answers 503 to, retried for ``operation_timeout_s``, is
    logged and the instance listed without it (the client's own retry would give up only after
    ten minutes, with an error the listing did not catch)."""
    backend = gcp_backend(gcp_settings({"compute_endpoint": fake_compute.url, "operation_timeout_s": 5}))
    stopped = backend.launch_vm(_request())
    fake_compute.set_guest_attribute(ZONE, stopped.vm_id.split("/")[1], "jitr/runner-exit", "no-job")
    fake_compute.set_status(ZONE, stopped.vm_id.split("/")[1], "TERMINATED")
    fake_compute.unavailable.add("guest_attributes")

    listed = _listed(backend, stopped.vm_id)

    assert (listed.running, listed.runner_exit) == (False, None)
