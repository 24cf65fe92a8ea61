"""Spot interruption notices as they reach the lifecycle queue, turned into one :class:`Interruption`.

Three shapes carry the same fact ("this VM is being reclaimed"): an EventBridge event from
``aws.ec2`` (the EC2 Spot Instance Interruption Warning, or a rebalance recommendation) as the
SQS body, a Cloud Logging ``LogEntry`` for the ``compute.instances.preempted`` system event as
the Pub/Sub data, and jitr's own ``interruption`` message (the embedded provider, tests).
A body that is none of them returns None, so the lifecycle messages go their usual way; one that
claims to be one of them but is malformed or foreign raises :class:`PayloadError` saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import PayloadError
from .model import MAX_NAME, QueueMessage

VERSION = 1
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
GCE_PREEMPTED = "compute.instances.preempted"
KINDS = ("interruption", "rebalance", "preempted")

_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_GCE_RESOURCE = re.compile(r"^projects/[^/]{1,100}/zones/[a-z0-9-]{1,63}/instances/([a-z][-a-z0-9]{0,62})$")
_VM_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TEXT = 200


@dataclass(frozen=True, slots=True)
class Interruption:
    """The cloud reclaims (or warns it will reclaim) one VM.

    ``vm_id`` is the provider's id (EC2 instance id, GCE numeric id, the embedded VM id) and
    ``runner_name`` the VM's name where the notice carries it (GCE instance names and embedded
    VMs are runner names); at least one is set. ``kind`` is ``interruption`` (reclaimed within
    minutes), ``rebalance`` (at elevated risk; AWS only) or ``preempted`` (GCE: already stopping).
    """

    source: str
    kind: str
    notice_at: float
    vm_id: str | None = None
    runner_name: str | None = None
    event_id: str = ""


def encode_interruption(interruption: Interruption) -> QueueMessage:
    """jitr's own form, for providers that have no cloud event to route (the embedded one)."""
    body = {
        "v": VERSION,
        "type": "interruption",
        "source": interruption.source,
        "kind": interruption.kind,
        "notice_at": interruption.notice_at,
        "vm_id": interruption.vm_id,
        "runner_name": interruption.runner_name,
        "event_id": interruption.event_id,
    }
    return QueueMessage(body=json.dumps(body, separators=(",", ":")), attributes={"type": "interruption"})


def interruption_in(body: str | bytes) -> Interruption | None:
    """The interruption a lifecycle-queue body carries; None when it is no interruption shape."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # the lifecycle decoder says what is wrong with it
    if not isinstance(data, dict):
        return None
    if "detail-type" in data or data.get("source") == "aws.ec2":
        return _eventbridge(data)
    if "protoPayload" in data or "logName" in data:
        return _log_entry(data)
    if data.get("type") == "interruption":
        return _native(data)
    return None


def _eventbridge(event: Mapping[str, Any]) -> Interruption:
    detail_type = _text(event, "detail-type", "EventBridge event")
    if event.get("source") != "aws.ec2" or detail_type not in (SPOT_WARNING, REBALANCE):
        raise PayloadError(
            f"the lifecycle queue takes EventBridge events from aws.ec2 of type {SPOT_WARNING!r} or {REBALANCE!r}, "
            f"found source {str(event.get('source'))[:40]!r} type {detail_type[:60]!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise PayloadError(f"{detail_type} event lacks its 'detail' object")
    instance_id = _text(detail, "instance-id", f"{detail_type} detail")
    if not _INSTANCE_ID.match(instance_id):
        raise PayloadError(f"{detail_type} event names no EC2 instance id: {instance_id[:40]!r}")
    return Interruption(
        source="aws",
        kind="interruption" if detail_type == SPOT_WARNING else "rebalance",
        notice_at=_timestamp(_text(event, "time", "EventBridge event"), "EventBridge event 'time'"),
        vm_id=instance_id,
        event_id=str(event.get("id") or "")[:_TEXT],
    )


def _log_entry(entry: Mapping[str, Any]) -> Interruption:
    payload = entry.get("protoPayload")
    method = payload.get("methodName") if isinstance(payload, Mapping) else None
    if method != GCE_PREEMPTED:
        raise PayloadError(
            f"the lifecycle topic takes log entries of {GCE_PREEMPTED!r}, found method {str(method)[:60]!r}"
        )
    assert isinstance(payload, Mapping)
    resource = entry.get("resource")
    labels = resource.get("labels") if isinstance(resource, Mapping) else None
    if not isinstance(resource, Mapping) or resource.get("type") != "gce_instance" or not isinstance(labels, Mapping):
        raise PayloadError(f"{GCE_PREEMPTED} log entry lacks a gce_instance resource with labels")
    match = _GCE_RESOURCE.match(_text(payload, "resourceName", f"{GCE_PREEMPTED} protoPayload"))
    if match is None:
        raise PayloadError(f"{GCE_PREEMPTED} log entry names no instance (projects/P/zones/Z/instances/NAME)")
    instance_id = labels.get("instance_id")
    vm_id = str(instance_id) if isinstance(instance_id, str) and instance_id.isdigit() else None
    return Interruption(
        source="gcp",
        kind="preempted",
        notice_at=_timestamp(_text(entry, "timestamp", "log entry"), "log entry 'timestamp'"),
        vm_id=vm_id,
        runner_name=match.group(1),
        event_id=str(entry.get("insertId") or "")[:_TEXT],
    )


def _native(data: Mapping[str, Any]) -> Interruption:
    if data.get("v") != VERSION:
        raise PayloadError(f"interruption message version must be {VERSION}, found {str(data.get('v'))[:20]!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise PayloadError(f"interruption kind must be one of {KINDS}, found {str(kind)[:40]!r}")
    notice_at = data.get("notice_at")
    if not isinstance(notice_at, (int, float)) or isinstance(notice_at, bool) or not 0 <= notice_at < 1e11:
        raise PayloadError(f"interruption 'notice_at' must be epoch seconds, found {str(notice_at)[:40]!r}")
    vm_id, name = data.get("vm_id"), data.get("runner_name")
    if vm_id is not None and not (isinstance(vm_id, str) and _VM_ID.match(vm_id)):
        raise PayloadError(f"interruption 'vm_id' is not a VM id: {str(vm_id)[:40]!r}")
    if name is not None and not (isinstance(name, str) and len(name) <= MAX_NAME and _GCE_NAME.match(name)):
        raise PayloadError(f"interruption 'runner_name' is not a runner name: {str(name)[:70]!r}")
    if vm_id is None and name is None:
        raise PayloadError("interruption message names neither a VM id nor a runner")
    return Interruption(
        source=_text(data, "source", "interruption message")[:40],
        kind=str(kind),
        notice_at=float(notice_at),
        vm_id=vm_id,
        runner_name=name,
        event_id=str(data.get("event_id") or "")[:_TEXT],
    )


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 512:
        raise PayloadError(f"{what} lacks a string {key!r}")
    return value


def _timestamp(value: str, what: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise PayloadError(f"{what} is not an ISO 8601 time: {value[:40]!r}") from None
