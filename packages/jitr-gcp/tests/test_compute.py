"""GCE launches through the real Compute client against the fake REST API: what reaches GCE, and errors."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, CapacityError, LaunchError
from jitr_core.model import LaunchRequest
from jitr_core.settings import Settings
from jitr_gcp.compute import CAPACITY_CODES, request_id
from jitr_gcp.testing.backend import gcp_backend, gcp_settings
from jitr_gcp.testing.compute_fake import FakeCompute
from jitr_gcp.testing.emulators import free_port

JIT_CONFIG = "eyJqaXQiOiJzZWNyZXQtcnVubmVyLWNvbmZpZyJ9"  # stands for the secret the startup script carries
SCRIPT = f"#!/bin/bash\nrun.sh --jitconfig {JIT_CONFIG}\n"


def request(name: str | None = None, **changes: object) -> LaunchRequest:
    name = name or f"jitr-linux-{uuid.uuid4().int % 10**9}-1"
    base = LaunchRequest(
        runner_name=name,
        pool="linux",
        machine_type="e2-standard-4",
        placement="us-central1-a",
        spot=True,
        image="projects/debian-cloud/global/images/family/debian-12",
        disk_gb=50,
        startup_script=SCRIPT,
        idempotency_token=uuid.uuid4().hex,
        max_lifetime_s=7200,
        labels={"jitr-runner": name, "jitr-pool": "linux", "jitr-job": "123456", "jitr-attempt": "1"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_insert_carries_spot_scheduling_labels_metadata_and_no_external_ip(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    req = request()
    result = vm_backend.launch_vm(req)
    assert (result.vm_id, result.provider, result.placement, result.spot) == (
        f"us-central1-a/{req.runner_name}",
        "gcp",
        "us-central1-a",
        True,
    )
    [insert] = fake_compute.inserts
    body = insert["body"]
    assert insert["requestId"] == request_id(req.idempotency_token)
    assert body["name"] == req.runner_name
    assert body["machineType"] == "zones/us-central1-a/machineTypes/e2-standard-4"
    assert body["labels"] == {
        "managed-by": "jitr",
        "jitr-runner": req.runner_name,
        "jitr-pool": "linux",
        "jitr-job": "123456",
        "jitr-attempt": "1",
    }
    assert body["metadata"]["items"] == [
        {"key": "startup-script", "value": SCRIPT},
        {"key": "enable-guest-attributes", "value": "TRUE"},  # where the teardown leaves its exit report
    ]
    assert body["scheduling"] == {
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "maxRunDuration": {"seconds": "7200"},
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
    }
    [disk] = body["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"]["sourceImage"] == req.image
    assert disk["initializeParams"]["diskSizeGb"] == "50"
    [nic] = body["networkInterfaces"]
    assert nic["network"] == "global/networks/default"
    assert not nic.get("accessConfigs")
    assert body["serviceAccounts"] == [
        {
            "email": "runner@jitr-test.iam.gserviceaccount.com",
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }
    ]


def test_standard_provisioning_when_not_spot_still_bounds_the_lifetime(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    result = vm_backend.launch_vm(request(spot=False))
    assert result.spot is False
    scheduling = fake_compute.inserts[0]["body"]["scheduling"]
    assert scheduling["provisioningModel"] == "STANDARD"
    assert scheduling["instanceTerminationAction"] == "DELETE"
    assert scheduling["maxRunDuration"] == {"seconds": "7200"}
    assert "automaticRestart" not in scheduling


def test_network_options_reach_the_interface(fake_compute: FakeCompute) -> None:
    settings = gcp_settings(
        {"compute_endpoint": fake_compute.url, "external_ip": "true", "network": "runners", "subnetwork": "ci"}
    )
    gcp_backend(settings).launch_vm(request(placement="us-central1-b"))
    [nic] = fake_compute.inserts[0]["body"]["networkInterfaces"]
    assert nic["network"] == "global/networks/runners"
    assert nic["subnetwork"] == "regions/us-central1/subnetworks/ci"
    assert nic["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert "serviceAccounts" not in fake_compute.inserts[0]["body"]


def test_a_pool_can_put_its_vms_on_its_own_network(fake_compute: FakeCompute) -> None:
    settings = gcp_settings({"compute_endpoint": fake_compute.url, "network": "runners", "subnetwork": "ci"})
    backend = gcp_backend(settings)
    backend.launch_vm(request(options={"network": "gpu-vpc", "subnetwork": "gpu"}))
    backend.launch_vm(request(options={"network": "projects/host/global/networks/shared"}))
    backend.launch_vm(request(options={"subnetwork": "regions/us-central1/subnetworks/other"}))
    nics = [insert["body"]["networkInterfaces"][0] for insert in fake_compute.inserts]
    assert (nics[0]["network"], nics[0]["subnetwork"]) == (
        "global/networks/gpu-vpc",
        "regions/us-central1/subnetworks/gpu",
    )
    # its own network without a subnetwork: the network's auto-mode subnetwork, not [gcp]'s
    assert nics[1]["network"] == "projects/host/global/networks/shared" and "subnetwork" not in nics[1]
    assert (nics[2]["network"], nics[2]["subnetwork"]) == (
        "global/networks/runners",
        "regions/us-central1/subnetworks/other",
    )


def test_labels_are_rewritten_to_gce_rules(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    vm_backend.launch_vm(request(labels={"Jitr-Repo": "Octo-Org/Hello.World", "9lives": "x" * 80}))
    labels = fake_compute.inserts[0]["body"]["labels"]
    assert labels["jitr-repo"] == "octo-org-hello-world"
    assert labels["l-9lives"] == "x" * 63


def test_one_token_gives_one_instance_even_when_retried(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    req = request()
    first = vm_backend.launch_vm(req)
    again = vm_backend.launch_vm(req)
    assert first == again
    assert fake_compute.instance_count(req.runner_name) == 1
    assert len(fake_compute.inserts) == 2
    assert fake_compute.inserts[0]["requestId"] == fake_compute.inserts[1]["requestId"]
    assert str(uuid.UUID(fake_compute.inserts[0]["requestId"])) == fake_compute.inserts[0]["requestId"]


def test_concurrent_launches_with_one_token_give_one_instance(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    req = request()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: vm_backend.launch_vm(req), range(8)))
    assert {r.vm_id for r in results} == {f"us-central1-a/{req.runner_name}"}
    assert fake_compute.instance_count(req.runner_name) == 1


def test_an_existing_instance_of_the_same_name_is_the_launch(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    req = request(spot=False)
    vm_backend.launch_vm(req)
    # A later retry whose requestId GCE has forgotten: the name conflict means it is already running.
    found = vm_backend.launch_vm(replace(req, idempotency_token="another-token", spot=True))
    assert found.vm_id == f"us-central1-a/{req.runner_name}"
    assert found.spot is False and found.machine_type == "e2-standard-4"
    assert fake_compute.instance_count(req.runner_name) == 1


def test_a_name_taken_by_an_unmanaged_instance_is_a_launch_error(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    req = request()
    vm_backend.launch_vm(req)
    fake_compute.instances[("us-central1-a", req.runner_name)]["labels"] = {"team": "web"}
    with pytest.raises(LaunchError, match="does not manage"):
        vm_backend.launch_vm(replace(req, idempotency_token="other"))


@pytest.mark.parametrize(
    "code", ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "QUOTA_EXCEEDED", "STOCKOUT"]
)
def test_capacity_failures_of_the_operation_are_capacity_errors(
    vm_backend: Backend, fake_compute: FakeCompute, code: str
) -> None:
    fake_compute.exhaust("us-central1-a", "e2-standard-4", code=code)
    with pytest.raises(CapacityError) as caught:
        vm_backend.launch_vm(request())
    assert caught.value.code == code
    assert "us-central1-a" in str(caught.value)
    # the next candidate of the chain (another machine type) still launches
    assert vm_backend.launch_vm(request(machine_type="e2-standard-8")).machine_type == "e2-standard-8"


@pytest.mark.parametrize(("reason", "status"), [("quotaExceeded", 403), ("resourceExhausted", 429)])
def test_synchronous_capacity_refusals_are_capacity_errors(
    vm_backend: Backend, fake_compute: FakeCompute, reason: str, status: int
) -> None:
    fake_compute.exhaust("us-central1-a", code=reason, sync=True, status=status)
    with pytest.raises(CapacityError) as caught:
        vm_backend.launch_vm(request())
    assert caught.value.code == reason
    assert not fake_compute.instances


def test_every_listed_capacity_code_is_recognised(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    for code in sorted(CAPACITY_CODES):
        fake_compute.exhaust("us-central1-b", code=code)
        with pytest.raises(CapacityError):
            vm_backend.launch_vm(request(placement="us-central1-b"))


def test_a_retried_launch_that_failed_for_capacity_fails_the_same_way(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    fake_compute.exhaust("us-central1-a")
    req = request()
    with pytest.raises(CapacityError):
        vm_backend.launch_vm(req)
    fake_compute.faults.clear()
    with pytest.raises(CapacityError):  # GCE answers a repeated requestId with the first operation
        vm_backend.launch_vm(req)
    assert fake_compute.instance_count(req.runner_name) == 0


def test_other_refusals_are_launch_errors_without_the_startup_script(
    vm_backend: Backend, fake_compute: FakeCompute, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_compute.exhaust(
        "us-central1-a", code="UNSUPPORTED_OPERATION", message="Spot VMs are not supported for this machine type."
    )
    with pytest.raises(LaunchError) as caught:
        vm_backend.launch_vm(request())
    assert "UNSUPPORTED_OPERATION" in str(caught.value) and "not supported" in str(caught.value)
    with pytest.raises(LaunchError, match="image"):
        vm_backend.launch_vm(request(placement="us-central1-b", image=""))
    with pytest.raises(LaunchError, match="not a valid GCE instance name"):
        vm_backend.launch_vm(request(name="Jitr_Bad", placement="us-central1-b"))
    with pytest.raises(LaunchError, match="machineType"):  # the fake validates like GCE: HTTP 400 "invalid"
        vm_backend.launch_vm(request(placement="us-central1-b", machine_type="e2-standard-4/../n2"))
    fake_compute.exhaust("us-central1-b", code="badRequest", sync=True, status=400, message="Bad request.")
    with pytest.raises(LaunchError) as sync_refusal:
        vm_backend.launch_vm(request(placement="us-central1-b"))
    for error in (caught.value, sync_refusal.value):
        assert JIT_CONFIG not in repr(error) and error.__cause__ is None
    assert JIT_CONFIG not in caplog.text


def test_a_server_error_may_be_retried(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    fake_compute.exhaust("us-central1-a", code="backendError", sync=True, status=503)
    with pytest.raises(BackendError) as caught:
        vm_backend.launch_vm(request())
    assert not isinstance(caught.value, LaunchError)


def test_an_unreachable_api_is_a_retryable_backend_error() -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = gcp_backend(gcp_settings({"compute_endpoint": closed, "operation_timeout_s": 5}))
    calls = (lambda: backend.launch_vm(request()), backend.list_vms, lambda: backend.terminate_vm("us-central1-a/x"))
    for call in calls:
        with pytest.raises(BackendError) as caught:
            call()
        assert not isinstance(caught.value, LaunchError) and JIT_CONFIG not in str(caught.value)


def test_a_listing_gce_keeps_answering_503_is_a_backend_error(fake_compute: FakeCompute) -> None:
    """Retried for ``operation_timeout_s``, then a BackendError: the client's own retry gives up
    after ten minutes with a RetryError, which scale-down's per-step isolation does not catch."""
    backend = gcp_backend(gcp_settings({"compute_endpoint": fake_compute.url, "operation_timeout_s": 5}))
    fake_compute.unavailable.add("aggregated")
    with pytest.raises(BackendError, match="could not list"):
        backend.list_vms()
    fake_compute.unavailable.clear()
    assert backend.list_vms() == []


def test_a_launch_refused_for_capacity_tries_again_when_asked_again(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    """A launch is asked again (the job's message redelivered) with the same request id, which GCE
    answers for an hour with the first insert's operation: an old failure is no answer, so the
    launch inserts again under an id of its own, each time it is asked, until GCE has room."""
    launch = request()
    fake_compute.exhaust("us-central1-a", "e2-standard-4")
    for _ in range(2):
        with pytest.raises(CapacityError):
            vm_backend.launch_vm(launch)
        for operation in fake_compute.operations.values():  # a minute passes
            operation["insertTime"] = "2026-01-01T00:00:00.000+00:00"
    fake_compute.faults.clear()

    assert vm_backend.launch_vm(launch).vm_id == f"us-central1-a/{launch.runner_name}"
    assert fake_compute.instance_count(launch.runner_name) == 1
    assert len({insert["requestId"] for insert in fake_compute.inserts}) == 3


def test_a_launch_needs_a_zone(fake_compute: FakeCompute) -> None:
    backend = gcp_backend(gcp_settings({"compute_endpoint": fake_compute.url}))
    with pytest.raises(LaunchError, match="JITR_GCP_ZONES"):
        backend.launch_vm(request(placement=None))
    with_zones = gcp_backend(gcp_settings({"compute_endpoint": fake_compute.url, "zones": ["us-central1-b"]}))
    assert with_zones.launch_vm(request(placement=None)).placement == "us-central1-b"


def test_listing_follows_pages_across_zones_and_only_managed_instances(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    fake_compute.page_limit = 2
    names = [f"jitr-linux-{i}-1" for i in range(7)]
    for i, name in enumerate(names):
        vm_backend.launch_vm(request(name, placement=("us-central1-a", "us-central1-b")[i % 2]))
    fake_compute.instances[("us-central1-a", names[0])]["labels"] = {"team": "web"}
    fake_compute.set_status("us-central1-b", names[1], "TERMINATED")
    listed = {vm.runner_name: vm for vm in vm_backend.list_vms()}
    assert sorted(listed) == sorted(names[1:])
    assert listed[names[1]].running is False
    assert all(vm.running for name, vm in listed.items() if name != names[1])
    assert {vm.pool for vm in listed.values()} == {"linux"}
    assert listed[names[2]].vm_id == f"us-central1-a/{names[2]}"
    assert listed[names[2]].created_at > 1.7e9


def test_terminate_deletes_and_tolerates_absence(vm_backend: Backend, fake_compute: FakeCompute) -> None:
    result = vm_backend.launch_vm(request())
    assert vm_backend.terminate_vm(result.vm_id)
    assert not fake_compute.instances
    assert vm_backend.terminate_vm(result.vm_id)
    with pytest.raises(BackendError, match="ZONE/NAME"):
        vm_backend.terminate_vm("i-0abc")


def test_a_protected_instance_is_a_backend_error_naming_it_and_keeps_running(
    vm_backend: Backend, fake_compute: FakeCompute
) -> None:
    """GCE refuses to delete it: the error says which instance and why (scale-down counts the
    failure and tries again on its next pass)."""
    result = vm_backend.launch_vm(request())
    zone, _, name = result.vm_id.partition("/")
    fake_compute.protect(zone, name)

    with pytest.raises(BackendError, match=f"GCE did not delete {result.vm_id}: .*protected against deletion"):
        vm_backend.terminate_vm(result.vm_id)

    assert fake_compute.instance_count(name) == 1
    fake_compute.protect(zone, name, on=False)
    assert vm_backend.terminate_vm(result.vm_id)
    assert fake_compute.instance_count(name) == 0


def test_hooks_stay_silent_for_another_provider(vm_settings: Settings) -> None:
    other = replace(vm_settings, providers={**vm_settings.providers, "vm": "aws"})
    pm = gcp_backend(other).pm
    assert pm.hook.jitr_launch_vm(request=request(), settings=other) is None
    assert pm.hook.jitr_terminate_vm(vm_id="us-central1-a/x", settings=other) is None
    assert pm.hook.jitr_list_vms(settings=other) is None
