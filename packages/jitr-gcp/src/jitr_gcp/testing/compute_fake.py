"""A fake of the Compute Engine v1 REST API, for the instance calls jitr makes.

There is no GCE emulator, so this answers like the published API for: ``instances.insert``
(returns a RUNNING zonal Operation that is DONE when fetched or waited for; ``requestId``
must be a UUID and repeats return the first operation), ``instances.get``, ``instances.delete``,
``instances.aggregatedList`` (``labels.KEY=VALUE`` filters, ``maxResults``/``pageToken``
pagination, scopes for zones without instances carry a warning), ``zoneOperations.get`` and
``.wait``. Errors are Google's JSON errors; capacity failures are injected with :meth:`exhaust`
either as a failed operation (``error.errors[].code``, as GCE reports stockouts) or as a
synchronous error (``errors[].reason``, as GCE reports quota); an instance given deletion
protection (:meth:`FakeCompute.protect`) refuses ``instances.delete`` with GCE's 400.

Every insert request body is kept in :attr:`FakeCompute.inserts` for tests to inspect.
"""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .fakehttp import ApiError, JsonServer

_BASE = "https://www.googleapis.com/compute/v1"
_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_FILTER = re.compile(r'^\s*labels\.([a-z][a-z0-9_-]*)\s*=\s*"?([a-z0-9_-]*)"?\s*$')
_PROJECT = r"^/compute/v1/projects/(?P<p>[^/]+)"
_ZONAL = _PROJECT + r"/zones/(?P<z>[^/]+)"
_ROUTES = [
    ("POST", re.compile(_ZONAL + r"/instances$"), "insert"),
    ("GET", re.compile(_ZONAL + r"/instances/(?P<n>[^/]+)$"), "get"),
    ("DELETE", re.compile(_ZONAL + r"/instances/(?P<n>[^/]+)$"), "delete"),
    ("GET", re.compile(_ZONAL + r"/instances/(?P<n>[^/]+)/getGuestAttributes$"), "guest_attributes"),
    ("GET", re.compile(_PROJECT + r"/aggregated/instances$"), "aggregated"),
    ("GET", re.compile(_ZONAL + r"/operations/(?P<n>[^/]+)$"), "poll"),
    ("POST", re.compile(_ZONAL + r"/operations/(?P<n>[^/]+)/wait$"), "poll"),
]
# HTTP status GCE puts on an operation that failed with these codes.
_OPERATION_STATUS = {"QUOTA_EXCEEDED": 403}


@dataclass(frozen=True)
class Fault:
    """A refusal the fake gives for inserts in a zone (and machine type, when set)."""

    code: str
    sync: bool
    status: int
    message: str


class FakeCompute(JsonServer):
    """In-memory instances and operations of one project, served over HTTP."""

    def __init__(self, project: str = "jitr-test", zones: tuple[str, ...] = ("us-central1-a", "us-central1-b")) -> None:
        super().__init__()
        self.project = project
        self.zones = zones
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}
        self.request_ids: dict[str, tuple[str, str]] = {}
        self.inserts: list[dict[str, Any]] = []
        self.guest: dict[tuple[str, str], dict[str, str]] = {}  # (zone, name) → "namespace/key" → value
        self.faults: dict[tuple[str, str | None], Fault] = {}
        self.page_limit = 500  # GCE's largest maxResults; lower it to force pagination
        self.unavailable: set[str] = set()  # calls answered 503 for now: "aggregated", "get", "guest_attributes"
        self._ids = itertools.count(4_600_000_000_000_000_000)

    # -- test controls ------------------------------------------------------------------------

    def exhaust(
        self,
        zone: str,
        machine_type: str | None = None,
        code: str = "ZONE_RESOURCE_POOL_EXHAUSTED",
        sync: bool = False,
        status: int = 403,
        message: str = "",
    ) -> None:
        """Refuse inserts in ``zone`` (for ``machine_type``, or any) with ``code``.

        ``sync=False``: the insert is accepted and its operation ends with ``error.errors[].code``.
        ``sync=True``: the insert itself fails with HTTP ``status`` and ``errors[].reason`` = ``code``.
        ``message`` defaults to GCE's stockout text.
        """
        message = message or (
            f"The zone 'projects/{self.project}/zones/{zone}' does not have enough resources available to fulfill "
            "the request.  Try a different zone, or try again later."
        )
        with self.lock:
            self.faults[(zone, machine_type)] = Fault(code, sync, status, message)

    def set_status(self, zone: str, name: str, status: str) -> None:
        """Move an instance to another state, as a guest shutdown or a preemption would."""
        with self.lock:
            self.instances[(zone, name)]["status"] = status

    def protect(self, zone: str, name: str, on: bool = True) -> None:
        """Set an instance's ``deletionProtection``, as ``instances.setDeletionProtection`` does."""
        with self.lock:
            self.instances[(zone, name)]["deletionProtection"] = on

    def set_guest_attribute(self, zone: str, name: str, path: str, value: str) -> None:
        """Write a guest attribute (``namespace/key``), as the VM does through its metadata server."""
        with self.lock:
            self.guest.setdefault((zone, name), {})[path] = value

    def instance_count(self, name: str) -> int:
        with self.lock:
            return sum(1 for (_, n) in self.instances if n == name)

    # -- HTTP -----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        for verb, pattern, action in _ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                if action in self.unavailable:
                    raise ApiError(503, "Internal error. Please try again or contact Google Support.", "backendError")
                args = match.groupdict()
                if args["p"] != self.project:
                    raise ApiError(404, f"The resource 'projects/{args['p']}' was not found", "notFound")
                if "z" in args and args["z"] not in self.zones:
                    raise ApiError(400, f"Invalid value for field 'zone': '{args['z']}'. Unknown zone.", "invalid")
                with self.lock:
                    result: tuple[int, Any] = getattr(self, "_" + action)(args, query, body)
                    return result
        raise ApiError(404, f"no route for {method} {path}", "notFound")

    def _insert(self, args: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        zone = args["z"]
        request_id = query.get("requestId", "")
        self.inserts.append({"zone": zone, "requestId": request_id, "body": body})
        if request_id:
            try:
                if uuid.UUID(request_id).int == 0:
                    raise ValueError(request_id)
            except ValueError:
                raise ApiError(400, f"Invalid value for field 'requestId': '{request_id}'.", "invalid") from None
            if request_id in self.request_ids:
                return 200, _public(self.operations[self.request_ids[request_id]])
        name = str(body.get("name", ""))
        machine_type = str(body.get("machineType", ""))
        self._validate(zone, name, machine_type, body)
        short_type = machine_type.rsplit("/", 1)[-1]
        fault = self.faults.get((zone, short_type)) or self.faults.get((zone, None))
        if fault and fault.sync:
            raise ApiError(fault.status, fault.message, fault.code)
        if (zone, name) in self.instances:
            resource = f"projects/{self.project}/zones/{zone}/instances/{name}"
            raise ApiError(409, f"The resource '{resource}' already exists", "alreadyExists")
        operation = self._new_operation(zone, "insert", name)
        if fault:
            operation["_error"] = {"errors": [{"code": fault.code, "message": fault.message}]}
            operation["_status"] = _OPERATION_STATUS.get(fault.code, 503)
        else:
            self.instances[(zone, name)] = {
                **body,
                "kind": "compute#instance",
                "id": str(next(self._ids)),
                "creationTimestamp": _now(),
                "status": "PROVISIONING",
                "zone": f"{_BASE}/projects/{self.project}/zones/{zone}",
                "machineType": f"{_BASE}/projects/{self.project}/zones/{zone}/machineTypes/{short_type}",
                "selfLink": f"{_BASE}/projects/{self.project}/zones/{zone}/instances/{name}",
            }
        if request_id:
            self.request_ids[request_id] = (zone, operation["name"])
        return 200, _public(operation)

    def _validate(self, zone: str, name: str, machine_type: str, body: dict[str, Any]) -> None:
        if not _NAME.match(name):
            raise ApiError(
                400,
                f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
                "invalid",
            )
        if not re.match(
            rf"^(?:{re.escape(_BASE)}/projects/[^/]+/)?zones/{re.escape(zone)}/machineTypes/[a-z0-9-]+$", machine_type
        ):
            raise ApiError(400, f"Invalid value for field 'resource.machineType': '{machine_type}'.", "invalid")
        boot = [d for d in body.get("disks", []) if d.get("boot")]
        if len(boot) != 1 or not boot[0].get("initializeParams", {}).get("sourceImage"):
            raise ApiError(
                400, "Invalid value for field 'resource.disks': a boot disk with a source image is required.", "invalid"
            )
        scheduling = body.get("scheduling", {})
        if "maxRunDuration" in scheduling and not scheduling.get("instanceTerminationAction"):
            raise ApiError(
                400,
                "Invalid value for field 'resource.scheduling.instanceTerminationAction': ''. "
                "It must be set when maxRunDuration is set.",
                "invalid",
            )

    def _new_operation(self, zone: str, kind: str, target: str) -> dict[str, Any]:
        name = f"operation-{uuid.uuid4().hex[:13]}-{uuid.uuid4().hex[:8]}"
        operation = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "zone": f"{_BASE}/projects/{self.project}/zones/{zone}",
            "operationType": kind,
            "targetLink": f"{_BASE}/projects/{self.project}/zones/{zone}/instances/{target}",
            "status": "RUNNING",
            "progress": 0,
            "insertTime": _now(),
            "startTime": _now(),
            "selfLink": f"{_BASE}/projects/{self.project}/zones/{zone}/operations/{name}",
        }
        self.operations[(zone, name)] = operation
        return operation

    def _poll(self, args: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        """``get`` and ``wait`` alike: the fake finishes an operation the first time it is asked about."""
        zone, name = args["z"], args["n"]
        operation = self.operations.get((zone, name))
        if operation is None:
            raise ApiError(
                404, f"The resource 'projects/{self.project}/zones/{zone}/operations/{name}' was not found", "notFound"
            )
        if operation["status"] != "DONE":
            operation.update(status="DONE", progress=100, endTime=_now())
            if "_error" in operation:
                status = operation["_status"]
                operation.update(
                    error=operation["_error"],
                    httpErrorStatusCode=status,
                    httpErrorMessage="FORBIDDEN" if status == 403 else "SERVICE UNAVAILABLE",
                )
            else:
                target = operation["targetLink"].rsplit("/", 1)[-1]
                if (zone, target) in self.instances and operation["operationType"] == "insert":
                    self.instances[(zone, target)]["status"] = "RUNNING"
        return 200, _public(operation)

    def _get(self, args: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        instance = self.instances.get((args["z"], args["n"]))
        if instance is None:
            raise ApiError(
                404,
                f"The resource 'projects/{self.project}/zones/{args['z']}/instances/{args['n']}' was not found",
                "notFound",
            )
        return 200, instance

    def _delete(self, args: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        _, instance = self._get(args, query, body)
        if instance.get("deletionProtection"):  # GCE's answer, word for word
            message = "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'."
            raise ApiError(400, message, "invalidResourceUsage")
        del self.instances[(args["z"], args["n"])]
        self.guest.pop((args["z"], args["n"]), None)
        operation = self._new_operation(args["z"], "delete", args["n"])
        operation.update(status="DONE", progress=100, endTime=_now())
        return 200, operation

    def _guest_attributes(self, args: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        self._get(args, query, body)
        path = query.get("queryPath", "")
        namespace = path.rstrip("/").split("/", 1)[0]
        items = []
        for full, value in sorted(self.guest.get((args["z"], args["n"]), {}).items()):
            ns, _, key = full.partition("/")
            if ns == namespace:
                items.append({"namespace": ns, "key": key, "value": value})
        if not items:
            raise ApiError(404, f"The resource 'guestAttributes/{path}' was not found", "notFound")
        return 200, {"kind": "compute#guestAttributes", "queryPath": path, "queryValue": {"items": items}}

    def _aggregated(self, args: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        wanted: tuple[str, str] | None = None
        if query.get("filter"):
            match = _FILTER.match(query["filter"])
            if not match:
                raise ApiError(
                    400,
                    f"Invalid value for field 'filter': '{query['filter']}'. Invalid list filter expression.",
                    "invalid",
                )
            wanted = (match.group(1), match.group(2))
        size = min(int(query.get("maxResults") or 500), self.page_limit)
        start = int(base64.urlsafe_b64decode(query["pageToken"]).decode()) if query.get("pageToken") else 0
        matching = [
            (zone, instance)
            for (zone, _), instance in sorted(self.instances.items())
            if wanted is None or instance.get("labels", {}).get(wanted[0]) == wanted[1]
        ]
        page = matching[start : start + size]
        items: dict[str, Any] = {}
        for zone in self.zones:
            instances = [i for z, i in page if z == zone]
            items[f"zones/{zone}"] = (
                {"instances": instances}
                if instances
                else {
                    "warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": f"There are no results for scope 'zones/{zone}' on this page.",
                        "data": [{"key": "scope", "value": f"zones/{zone}"}],
                    }
                }
            )
        answer: dict[str, Any] = {
            "kind": "compute#instanceAggregatedList",
            "id": f"projects/{self.project}/aggregated/instances",
            "items": items,
            "selfLink": f"{_BASE}/projects/{self.project}/aggregated/instances",
        }
        if start + size < len(matching):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return 200, answer


def _public(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation without the fake's own bookkeeping (keys starting with ``_``)."""
    return {k: v for k, v in operation.items() if not k.startswith("_")}


def _now() -> str:
    """An RFC 3339 time with milliseconds and offset, as GCE writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
