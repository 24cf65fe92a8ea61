"""Interruption notices as the lifecycle queue gets them (EventBridge, Cloud Logging, jitr's own); the opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_core.errors import PayloadError, SettingsError
from jitr_core.interruption import Interruption, encode_interruption, interruption_in
from jitr_core.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "interruptions"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_the_ec2_spot_interruption_warning_names_its_instance():
    notice = interruption_in(json.dumps(fixture("ec2-spot-interruption-warning.json")))
    assert notice == Interruption(
        source="aws",
        kind="interruption",
        notice_at=notice.notice_at,
        vm_id="i-1234567890abcdef0",
        event_id="12345678-1234-1234-1234-123456789012",
    )
    assert notice.notice_at == 1796184600.0  # 2026-12-02T04:10:00Z


def test_a_rebalance_recommendation_is_its_own_kind():
    notice = interruption_in(json.dumps(fixture("ec2-rebalance-recommendation.json")))
    assert notice is not None and notice.kind == "rebalance" and notice.vm_id == "i-1234567890abcdef0"


def test_the_gce_preemption_log_entry_names_its_runner():
    notice = interruption_in(json.dumps(fixture("gce-preempted-log-entry.json")).encode())
    assert notice is not None
    assert (notice.source, notice.kind, notice.runner_name) == ("gcp", "preempted", "jitr-linux-9000000001-1")
    assert notice.vm_id == "1234567890123456789" and notice.event_id == "-abcd1234"


def test_jitrs_own_form_round_trips():
    sent = Interruption("embedded", "interruption", 1764648600.5, vm_id="vm-000001", runner_name="jitr-a-1-1")
    assert interruption_in(encode_interruption(sent).body) == sent


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"v": 1, "type": "lifecycle"}', b"\xff\xfe", b'{"action": "completed"}'],
)
def test_other_bodies_are_left_to_the_lifecycle_decoder(body):
    assert interruption_in(body) is None


def _spot(**changes: object) -> str:
    event = fixture("ec2-spot-interruption-warning.json")
    event.update(changes)
    return json.dumps(event)


def _preempted(**payload: object) -> str:
    entry = fixture("gce-preempted-log-entry.json")
    entry["protoPayload"].update(payload)
    return json.dumps(entry)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_spot(source="aws.ec2.evil"), "aws.ec2"),
        (_spot(**{"detail-type": "EC2 Instance State-change Notification"}), "State-change"),
        (_spot(detail="i-1234567890abcdef0"), "detail"),
        (_spot(detail={"instance-id": "i-123; rm -rf /"}), "instance id"),
        (_spot(detail={"instance-id": 7}), "instance-id"),
        (_spot(time="yesterday"), "ISO 8601"),
        (_spot(time=None), "time"),
        (_preempted(methodName="v1.compute.instances.delete"), "compute.instances.preempted"),
        (_preempted(resourceName="projects/p/zones/z/instances/../../x"), "names no instance"),
        (json.dumps({"logName": "x", "protoPayload": "nope"}), "compute.instances.preempted"),
        (json.dumps({"v": 2, "type": "interruption"}), "version"),
        (json.dumps({"v": 1, "type": "interruption", "kind": "x", "source": "s", "notice_at": 1}), "kind"),
        (
            json.dumps({"v": 1, "type": "interruption", "kind": "interruption", "source": "s", "notice_at": 1}),
            "neither",
        ),
        (
            json.dumps({"v": 1, "type": "interruption", "kind": "interruption", "source": "s", "notice_at": True}),
            "notice_at",
        ),
        (
            json.dumps(
                {
                    "v": 1,
                    "type": "interruption",
                    "kind": "interruption",
                    "source": "s",
                    "notice_at": 1,
                    "vm_id": "a" * 500,
                }
            ),
            "vm_id",
        ),
    ],
)
def test_malformed_or_foreign_notices_say_what_is_wrong(body, says):
    with pytest.raises(PayloadError) as caught:
        interruption_in(body)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 400


def test_rerun_on_interruption_is_off_unless_a_pool_opts_in() -> None:
    pool = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m7i.large"]}
    assert Settings.from_mapping({"pools": [pool]}).pools[0].rerun_on_interruption is False
    assert Settings.from_mapping({"pools": [{**pool, "rerun_on_interruption": True}]}).pools[0].rerun_on_interruption
    with pytest.raises(SettingsError, match=r"rerun_on_interruption must be true or false"):
        Settings.from_env({"JITR_POOLS": json.dumps([{**pool, "rerun_on_interruption": "sometimes"}])})
