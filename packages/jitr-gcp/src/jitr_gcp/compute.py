"""Runner VMs on Compute Engine: launch, delete and list the instances jitr manages.

Launches are idempotent twice over: the ``requestId`` is a UUID derived from the launch's
idempotency token (GCE returns the first operation for a repeated id), and an existing instance
with the runner's name is taken as the launch already done. Spot instances carry
``maxRunDuration`` with ``instanceTerminationAction=DELETE`` so GCE itself enforces the runner's
maximum lifetime. Uses the REST transport: it starts faster than gRPC in a short-lived function
and lets tests point the real client at a local fake.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jitr_core.errors import BackendError, CapacityError, LaunchError
from jitr_core.model import LaunchRequest, LaunchResult, VMInfo

from .clients import anonymous_if_local, bounded, cached_client
from .config import PROVIDER, GcpConfig

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud import compute_v1

log = logging.getLogger("jitr.gcp.compute")

MANAGED_LABEL = ("managed-by", "jitr")
EXIT_REPORT = ("jitr", "runner-exit")  # namespace and key of the guest attribute the teardown writes
# Error codes (operation errors) and reasons (synchronous errors) that mean "no room for this
# candidate here": another machine type, zone or provisioning model may still work.
CAPACITY_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "REGION_RESOURCE_POOL_EXHAUSTED",
        "QUOTA_EXCEEDED",
        "STOCKOUT",
        "resourceExhausted",
        "quotaExceeded",
        "RESOURCE_EXHAUSTED",
    }
)
# Instance states in which the VM may still run a job (and so counts against the caps).
_ALIVE = frozenset({"PROVISIONING", "STAGING", "RUNNING", "REPAIRING"})
_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")
_REQUEST_ID_NAMESPACE = uuid.UUID("6f1c9a52-4b8e-5d0a-9c61-2f7e3b1d8a40")


REPLAY_SKEW_S = 5.0  # GCE's clock against ours: an operation older than this was not started by this call
MAX_REPLAYS = 20  # failed inserts of one launch GCE may still answer with (one per try within its hour)


def request_id(idempotency_token: str) -> str:
    """The GCE ``requestId`` for a token: GCE wants a UUID, the same token must give the same one."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, idempotency_token))


def vm_id(zone: str, name: str) -> str:
    """jitr's id of an instance: ``ZONE/NAME``, all that deleting it takes."""
    return f"{zone}/{name}"


def gce_labels(request: LaunchRequest) -> dict[str, str]:
    """The instance's labels: jitr's own plus the request's, rewritten to GCE's label rules."""
    labels = {"jitr-runner": request.runner_name, "jitr-pool": request.pool, **request.labels}
    out = {_label_key(k): _label_value(v) for k, v in labels.items()}
    out[MANAGED_LABEL[0]] = MANAGED_LABEL[1]
    return out


def _label_key(key: str) -> str:
    cleaned = _LABEL_UNSAFE.sub("-", key.lower())
    return (cleaned if cleaned[:1].isalpha() else "l-" + cleaned)[:63]


def _label_value(value: str) -> str:
    return _LABEL_UNSAFE.sub("-", str(value).lower())[:63]


def instance_body(request: LaunchRequest, zone: str, cfg: GcpConfig) -> dict[str, Any]:
    """The ``Instance`` resource for one launch, as a mapping the SDK accepts."""
    image = request.image if "/" in request.image else f"global/images/{request.image}"
    network, subnetwork = pool_network(request.options, cfg)
    interface: dict[str, Any] = {"network": _network(network)}
    if subnetwork:
        interface["subnetwork"] = _subnetwork(subnetwork, zone)
    if cfg.external_ip:
        interface["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
    scheduling: dict[str, Any] = {
        "provisioning_model": "SPOT" if request.spot else "STANDARD",
        "instance_termination_action": "DELETE",
        "max_run_duration": {"seconds": request.max_lifetime_s},
    }
    if request.spot:
        scheduling |= {"automatic_restart": False, "on_host_maintenance": "TERMINATE"}
    body: dict[str, Any] = {
        "name": request.runner_name,
        "machine_type": f"zones/{zone}/machineTypes/{request.machine_type}",
        "labels": gce_labels(request),
        "metadata": {
            "items": [
                {"key": "startup-script", "value": request.startup_script},
                {"key": "enable-guest-attributes", "value": "TRUE"},  # the teardown's exit report
            ]
        },
        "disks": [
            {
                "boot": True,
                "auto_delete": True,
                "initialize_params": {
                    "source_image": image,
                    "disk_size_gb": request.disk_gb,
                    "disk_type": f"zones/{zone}/diskTypes/{cfg.disk_type}",
                },
            }
        ],
        "network_interfaces": [interface],
        "scheduling": scheduling,
    }
    if cfg.service_account:
        body["service_accounts"] = [{"email": cfg.service_account, "scopes": list(cfg.scopes)}]
    return body


def pool_network(options: Mapping[str, Any], cfg: GcpConfig) -> tuple[str, str]:
    """(network, subnetwork) of a pool's VMs: its ``options.network``/``options.subnetwork``, else ``[gcp]``'s.

    A pool that names its own network and no subnetwork takes that network's auto-mode subnetwork,
    not ``[gcp] subnetwork`` (which belongs to the ``[gcp]`` network).
    """
    network, subnetwork = options.get("network"), options.get("subnetwork")  # checked by gcp_config
    if network is None:
        return cfg.network, str(subnetwork) if subnetwork is not None else cfg.subnetwork
    return str(network), str(subnetwork or "")


def _network(network: str) -> str:
    return network if "/" in network else f"global/networks/{network}"


def _subnetwork(subnetwork: str, zone: str) -> str:
    return subnetwork if "/" in subnetwork else f"regions/{zone.rsplit('-', 1)[0]}/subnetworks/{subnetwork}"


# -- clients -----------------------------------------------------------------------------------


def _instances(cfg: GcpConfig) -> compute_v1.InstancesClient:
    def build() -> compute_v1.InstancesClient:
        from google.cloud import compute_v1

        return compute_v1.InstancesClient(
            transport="rest", credentials=anonymous_if_local(cfg.compute_endpoint), client_options=_options(cfg)
        )

    return cached_client(("compute.instances", cfg.compute_endpoint), build)


def _operations(cfg: GcpConfig) -> compute_v1.ZoneOperationsClient:
    def build() -> compute_v1.ZoneOperationsClient:
        from google.cloud import compute_v1

        return compute_v1.ZoneOperationsClient(
            transport="rest", credentials=anonymous_if_local(cfg.compute_endpoint), client_options=_options(cfg)
        )

    return cached_client(("compute.operations", cfg.compute_endpoint), build)


def _options(cfg: GcpConfig) -> dict[str, str] | None:
    return {"api_endpoint": cfg.compute_endpoint} if cfg.compute_endpoint else None


# -- launch ------------------------------------------------------------------------------------


def launch(request: LaunchRequest, cfg: GcpConfig) -> LaunchResult:
    """Create the runner's instance and wait (bounded) until GCE accepted or refused it."""
    from google.cloud import compute_v1

    zone = request.placement or (cfg.zones[0] if cfg.zones else "")
    if not _ZONE.match(zone):
        raise LaunchError(
            f"a GCE launch needs a zone (pool placements or JITR_GCP_ZONES) such as us-central1-a, found {zone!r}"
        )
    if not request.image:
        raise LaunchError(f"pool {request.pool!r} names no image; a GCE runner needs a boot image")
    if not _NAME.match(request.runner_name):
        raise LaunchError(f"runner name {request.runner_name!r} is not a valid GCE instance name")
    insert = compute_v1.InsertInstanceRequest(
        project=cfg.project,
        zone=zone,
        instance_resource=compute_v1.Instance(instance_body(request, zone, cfg)),
        request_id=request_id(request.idempotency_token),
    )
    asked_at = time.time()
    operation = _insert(insert, request, cfg)
    for _ in range(MAX_REPLAYS):
        if not isinstance(operation, compute_v1.Operation) or not _replayed(operation, asked_at):
            break
        # GCE answers a request id it has seen (for about an hour) with that insert's operation: a
        # failure then (no capacity) is not an answer now, and a failed insert created nothing. The
        # next id follows from the failed operation, so a later try finds this one's answer.
        insert.request_id = request_id(f"{request.idempotency_token}/{operation.name}")
        operation = _insert(insert, request, cfg)
    if isinstance(operation, LaunchResult):
        return operation
    codes = [e.code for e in operation.error.errors]
    if codes:
        messages = "; ".join(_scrub(e.message, request) for e in operation.error.errors)
        capacity = _capacity(codes)
        if capacity:
            log.info("gcp capacity refused", extra={"runner_name": request.runner_name, "zone": zone, "code": capacity})
            raise CapacityError(f"GCE has no capacity for {request.machine_type} in {zone}: {messages}", capacity)
        if "RESOURCE_ALREADY_EXISTS" in codes:
            return _existing(request, zone, cfg)
        raise LaunchError(f"GCE refused to create {request.runner_name} in {zone} ({', '.join(codes)}): {messages}")
    log.info("gcp instance created", extra={"runner_name": request.runner_name, "zone": zone})
    return LaunchResult(vm_id(zone, request.runner_name), PROVIDER, request.machine_type, zone, request.spot)


def _insert(
    insert: compute_v1.InsertInstanceRequest, request: LaunchRequest, cfg: GcpConfig
) -> compute_v1.Operation | LaunchResult:
    """The insert's finished operation, or the instance an earlier try of this launch made."""
    from google.api_core import exceptions

    zone = insert.zone
    try:
        operation = _instances(cfg).insert_unary(request=insert, timeout=cfg.operation_timeout_s)
    except exceptions.Conflict as exc:
        if "alreadyExists" not in _codes(exc):
            raise _launch_error(request, zone, exc) from None
        return _existing(request, zone, cfg)
    except exceptions.GoogleAPICallError as exc:
        raise _launch_error(request, zone, exc) from None
    except OSError as exc:  # the REST transport's connection errors and timeouts
        raise BackendError(f"GCE could not be reached to create {request.runner_name}: {exc!r}") from None
    return _wait(operation, zone, cfg, what=f"launch of {request.runner_name}")


def _replayed(operation: compute_v1.Operation, asked_at: float) -> bool:
    """Whether the operation failed and began before this call asked (by more than clocks may disagree)."""
    if not operation.error.errors:
        return False
    try:
        return datetime.fromisoformat(operation.insert_time).timestamp() < asked_at - REPLAY_SKEW_S
    except ValueError:
        return False


def _wait(operation: compute_v1.Operation, zone: str, cfg: GcpConfig, what: str) -> compute_v1.Operation:
    """Wait for a zonal operation until DONE, at most ``operation_timeout_s``."""
    from google.api_core import exceptions
    from google.cloud import compute_v1

    deadline = time.monotonic() + cfg.operation_timeout_s
    done = compute_v1.Operation.Status.DONE
    while operation.status != done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendError(f"GCE {what} did not finish in {cfg.operation_timeout_s}s (operation {operation.name})")
        try:
            operation = _operations(cfg).wait(
                project=cfg.project, zone=zone, operation=operation.name, timeout=max(1.0, remaining)
            )
        except (exceptions.GoogleAPICallError, OSError) as exc:
            raise BackendError(f"GCE {what}: waiting for operation {operation.name} failed: {_text(exc)}") from None
    return operation


def _existing(request: LaunchRequest, zone: str, cfg: GcpConfig) -> LaunchResult:
    """The instance already named after the runner, if jitr made it (a retried launch)."""
    from google.api_core import exceptions

    try:
        found = _instances(cfg).get(
            project=cfg.project, zone=zone, instance=request.runner_name, **bounded(cfg.operation_timeout_s)
        )
    except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
        raise BackendError(f"GCE instance {request.runner_name} exists but could not be read: {_text(exc)}") from None
    if found.labels.get(MANAGED_LABEL[0]) != MANAGED_LABEL[1]:
        raise LaunchError(f"instance name {request.runner_name} in {zone} is taken by an instance jitr does not manage")
    spot = found.scheduling.provisioning_model == "SPOT"
    return LaunchResult(vm_id(zone, found.name), PROVIDER, found.machine_type.rsplit("/", 1)[-1], zone, spot)


def _codes(exc: GoogleAPICallError) -> list[str]:
    """Codes and reasons of a synchronous API error (Google's ``error.errors[]``)."""
    codes = [str(e.get(k, "")) for e in exc.errors if isinstance(e, Mapping) for k in ("code", "reason")]
    if exc.reason:
        codes.append(exc.reason)
    return [c for c in codes if c]


def _capacity(codes: Iterable[str]) -> str | None:
    return next((c for c in codes if c in CAPACITY_CODES), None)


def _launch_error(request: LaunchRequest, zone: str, exc: GoogleAPICallError) -> Exception:
    codes = _codes(exc)
    message = _scrub(exc.message or "", request)
    capacity = _capacity(codes)
    if capacity:
        return CapacityError(f"GCE has no capacity for {request.machine_type} in {zone}: {message}", capacity)
    status = exc.code if isinstance(exc.code, int) else 0
    detail = f"GCE refused to create {request.runner_name} in {zone} (HTTP {status} {', '.join(codes)}): {message}"
    return BackendError(detail) if status >= 500 or status in (0, 429) else LaunchError(detail)


def _text(exc: Exception) -> str:
    """An API error's message, or a transport error's repr (requests errors are OSErrors)."""
    return str(getattr(exc, "message", "") or repr(exc))


def _scrub(message: str, request: LaunchRequest) -> str:
    """An API message with the startup script (which carries the JIT config) cut out."""
    script = request.startup_script
    return message.replace(script, "<startup-script>") if script and script in message else message


# -- delete and list ---------------------------------------------------------------------------


def terminate(vm: str, cfg: GcpConfig) -> bool:
    """Ask GCE to delete an instance; True once accepted or when it is already gone."""
    from google.api_core import exceptions

    zone, _, name = vm.partition("/")
    if not _ZONE.match(zone) or not _NAME.match(name):
        raise BackendError(f"not a GCE vm id (expected ZONE/NAME): {vm!r}")
    try:
        _instances(cfg).delete_unary(project=cfg.project, zone=zone, instance=name, timeout=cfg.operation_timeout_s)
    except exceptions.NotFound:
        return True
    except (exceptions.GoogleAPICallError, OSError) as exc:
        raise BackendError(f"GCE did not delete {vm}: {_text(exc)}") from None
    log.info("gcp instance deleted", extra={"vm_id": vm})
    return True


def list_vms(cfg: GcpConfig) -> list[VMInfo]:
    """Every instance labelled ``managed-by=jitr`` in the project, all zones, all pages.

    An instance that is no longer running carries the exit report its startup script left as a
    guest attribute, read with one call per such instance (they are few: a VM deletes itself).
    """
    from google.api_core import exceptions
    from google.cloud import compute_v1

    request = compute_v1.AggregatedListInstancesRequest(
        project=cfg.project, filter=f"labels.{MANAGED_LABEL[0]}={MANAGED_LABEL[1]}", max_results=500
    )
    try:
        vms = [
            _vm_info(instance, scope)
            for scope, scoped in _instances(cfg).aggregated_list(request=request, **bounded(cfg.operation_timeout_s))
            for instance in scoped.instances
        ]
    except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
        raise BackendError(f"GCE could not list jitr instances: {_text(exc)}") from None
    return [vm if vm.running else replace(vm, runner_exit=_runner_exit(cfg, vm.vm_id)) for vm in vms]


def _runner_exit(cfg: GcpConfig, vm: str) -> str | None:
    """The ``jitr/runner-exit`` guest attribute of a stopped instance: "job", "no-job" or None.

    The query reads the ``jitr/`` namespace; GCE answers 404 when the instance has none."""
    from google.api_core import exceptions
    from google.cloud import compute_v1

    zone, _, name = vm.partition("/")
    request = compute_v1.GetGuestAttributesInstanceRequest(
        project=cfg.project, zone=zone, instance=name, query_path=f"{EXIT_REPORT[0]}/"
    )
    try:
        answer = _instances(cfg).get_guest_attributes(request=request, **bounded(cfg.operation_timeout_s))
    except exceptions.NotFound:
        return None
    except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:  # a hint: listing goes on
        log.warning("could not read a runner's exit report", extra={"vm_id": vm, "reason": _text(exc)})
        return None
    for item in answer.query_value.items:
        if (item.namespace, item.key) == EXIT_REPORT and item.value in ("job", "no-job"):
            return str(item.value)
    return None


def _vm_info(instance: compute_v1.Instance, scope: str) -> VMInfo:
    zone = scope.rsplit("/", 1)[-1]
    labels: Mapping[str, str] = instance.labels
    return VMInfo(
        vm_id=vm_id(zone, instance.name),
        runner_name=instance.name,
        pool=labels.get("jitr-pool", ""),
        provider=PROVIDER,
        created_at=_epoch(instance.creation_timestamp),
        running=instance.status in _ALIVE,
    )


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp() if timestamp else 0.0
