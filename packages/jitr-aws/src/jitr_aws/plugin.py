"""The hook implementations of the ``aws`` provider; each answers only for roles set to ``aws``.

Only the settings parser and the startup-script fragments are imported here: the service modules,
and boto3 with them, are imported on the first call that needs them, so discovering this plugin
costs no cloud SDK import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import Sample
from jitr_core.model import (
    Admission,
    LaunchRequest,
    LaunchResult,
    Loaded,
    QueueMessage,
    ReceivedMessage,
    Record,
    RecordPage,
    RecordQuery,
    VMIdentity,
    VMInfo,
    Written,
)
from jitr_core.secret import Secret
from jitr_core.settings import Settings
from jitr_core.startup import Fragment, ScriptContext

from . import fragments
from .config import PROVIDER, USER_DATA_LIMIT, aws_config


def _mine(settings: Settings, role: str) -> bool:
    return settings.provider(role) == PROVIDER


@hookimpl
def jitr_launch_vm(request: LaunchRequest, settings: Settings) -> LaunchResult | None:
    if not _mine(settings, "vm"):
        return None
    from . import ec2

    return ec2.launch(request, aws_config(settings))


@hookimpl
def jitr_terminate_vm(vm_id: str, settings: Settings) -> bool | None:
    if not _mine(settings, "vm"):
        return None
    from . import ec2

    return ec2.terminate(vm_id, aws_config(settings))


@hookimpl
def jitr_list_vms(settings: Settings) -> Sequence[VMInfo] | None:
    if not _mine(settings, "vm"):
        return None
    from . import ec2

    return ec2.list_vms(aws_config(settings))


@hookimpl
def jitr_user_data_limit(provider: str, settings: Settings) -> int | None:
    """EC2 user data: 16 KB before base64."""
    return USER_DATA_LIMIT if provider == PROVIDER else None


@hookimpl
def jitr_verify_vm_identity(
    provider: str, proof: Mapping[str, str], audience: str, settings: Settings
) -> VMIdentity | None:
    """An EC2 instance identity document and its signature (they name no audience)."""
    if provider != PROVIDER:
        return None
    from . import identity

    return identity.verify(proof, aws_config(settings))


@hookimpl
def jitr_enqueue(queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
    if not _mine(settings, "queue"):
        return None
    from . import sqs

    return sqs.enqueue(queue, message, delay_s, aws_config(settings))


@hookimpl
def jitr_receive_messages(
    queue: str, max_messages: int, visibility_timeout_s: int, settings: Settings
) -> Sequence[ReceivedMessage] | None:
    if not _mine(settings, "queue"):
        return None
    from . import sqs

    return sqs.receive(queue, max_messages, visibility_timeout_s, aws_config(settings))


@hookimpl
def jitr_ack_message(queue: str, receipt: str, settings: Settings) -> bool | None:
    if not _mine(settings, "queue"):
        return None
    from . import sqs

    return sqs.ack(queue, receipt, aws_config(settings))


@hookimpl
def jitr_dead_letter(queue: str, message: QueueMessage, reason: str, settings: Settings) -> bool | None:
    if not _mine(settings, "queue"):
        return None
    from . import sqs

    return sqs.dead_letter(queue, message, reason, aws_config(settings))


@hookimpl
def jitr_dead_letters(queue: str, settings: Settings) -> Sequence[ReceivedMessage] | None:
    if not _mine(settings, "queue"):
        return None
    from . import sqs

    return sqs.dead_letters(queue, aws_config(settings))


@hookimpl
def jitr_store_runner(record: Record, expected_version: int | None, settings: Settings) -> Written | None:
    if not _mine(settings, "store"):
        return None
    if record.kind == "runner":
        from . import counts

        return counts.put(record, expected_version, aws_config(settings))
    from . import dynamodb

    return dynamodb.put(record, expected_version, aws_config(settings))


@hookimpl
def jitr_claim_runner(record: Record, pool_max: int, global_max: int, settings: Settings) -> Admission | None:
    """Claims are counted in counter items, in one transaction with the record (see :mod:`jitr_aws.counts`)."""
    if not _mine(settings, "store"):
        return None
    from . import counts

    return counts.claim(record, pool_max, global_max, aws_config(settings))


@hookimpl
def jitr_repair_runner_counts(settings: Settings) -> int | None:
    if not _mine(settings, "store"):
        return None
    from . import counts

    return counts.repair(settings, aws_config(settings))


@hookimpl
def jitr_load_record(kind: str, key: str, settings: Settings) -> Loaded | None:
    if not _mine(settings, "store"):
        return None
    from . import dynamodb

    return dynamodb.load(kind, key, aws_config(settings))


@hookimpl
def jitr_query_records(query: RecordQuery, settings: Settings) -> RecordPage | None:
    if not _mine(settings, "store"):
        return None
    from . import dynamodb

    return dynamodb.query(query, aws_config(settings))


@hookimpl
def jitr_delete_record(kind: str, key: str, expected_version: int | None, settings: Settings) -> Written | None:
    if not _mine(settings, "store"):
        return None
    if kind == "runner":
        from . import counts

        return counts.delete(key, expected_version, aws_config(settings))
    from . import dynamodb

    return dynamodb.delete(kind, key, expected_version, aws_config(settings))


@hookimpl
def jitr_purge_expired(now: float, settings: Settings) -> int | None:
    """DynamoDB's TTL deletes expired records; reads already hide them, so there is nothing to do."""
    if not _mine(settings, "store"):
        return None
    return 0


@hookimpl
def jitr_fetch_secret(name: str, reference: str, settings: Settings) -> str | None:
    if not _mine(settings, "secrets"):
        return None
    from . import secrets

    return secrets.fetch(name, reference, aws_config(settings))


@hookimpl
def jitr_store_secret(name: str, reference: str, value: Secret, settings: Settings) -> bool | None:
    if not _mine(settings, "secrets"):
        return None
    from . import secrets

    return secrets.store(name, reference, value, aws_config(settings))


@hookimpl
def jitr_render_startup_script(context: ScriptContext) -> Sequence[Fragment] | None:
    return fragments.fragments(context)


@hookimpl
def jitr_emit_metrics(samples: Sequence[Sample], settings: Settings) -> None:
    """On AWS (the queues are SQS, so the functions run on Lambda): CloudWatch EMF lines on stdout."""
    if _mine(settings, "queue"):
        from .metrics import write_emf

        write_emf(samples, namespace=aws_config(settings).metrics_namespace)
