"""jitr's GCP plugin (entry point ``gcp``): hook implementations that delegate to one module each.

Every provider hook answers only when the settings choose ``gcp`` for its role and returns None
otherwise. Importing this module imports no Google SDK: each hook imports the module for its
service on first call, so the webhook (which only publishes) never loads the Compute client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jitr_core.hookspecs import hookimpl
from jitr_core.metrics import Sample
from jitr_core.model import (
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
from .config import PROVIDER, GcpConfig, gcp_config

USER_DATA_LIMIT = 256 * 1024


def _mine(settings: Settings, role: str) -> GcpConfig | None:
    return gcp_config(settings) if settings.provider(role) == PROVIDER else None


# -- VMs ---------------------------------------------------------------------------------------


@hookimpl
def jitr_launch_vm(request: LaunchRequest, settings: Settings) -> LaunchResult | None:
    if (cfg := _mine(settings, "vm")) is None:
        return None
    from . import compute

    return compute.launch(request, cfg)


@hookimpl
def jitr_terminate_vm(vm_id: str, settings: Settings) -> bool | None:
    if (cfg := _mine(settings, "vm")) is None:
        return None
    from . import compute

    return compute.terminate(vm_id, cfg)


@hookimpl
def jitr_list_vms(settings: Settings) -> Sequence[VMInfo] | None:
    if (cfg := _mine(settings, "vm")) is None:
        return None
    from . import compute

    return compute.list_vms(cfg)


@hookimpl
def jitr_user_data_limit(provider: str, settings: Settings) -> int | None:
    """GCE metadata: 256 KB per value."""
    return USER_DATA_LIMIT if provider == PROVIDER else None


@hookimpl
def jitr_verify_vm_identity(
    provider: str, proof: Mapping[str, str], audience: str, settings: Settings
) -> VMIdentity | None:
    """A GCE instance's Google-signed identity token (format=full) for the broker's audience."""
    if provider != PROVIDER:
        return None
    from . import identity

    return identity.verify(proof, audience, gcp_config(settings))


# -- queues ------------------------------------------------------------------------------------


@hookimpl
def jitr_enqueue(queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
    if (cfg := _mine(settings, "queue")) is None:
        return None
    from . import pubsub

    return pubsub.enqueue(queue, message, delay_s, cfg)


@hookimpl
def jitr_receive_messages(
    queue: str, max_messages: int, visibility_timeout_s: int, settings: Settings
) -> Sequence[ReceivedMessage] | None:
    if (cfg := _mine(settings, "queue")) is None:
        return None
    from . import pubsub

    return pubsub.receive(queue, max_messages, visibility_timeout_s, cfg)


@hookimpl
def jitr_ack_message(queue: str, receipt: str, settings: Settings) -> bool | None:
    if (cfg := _mine(settings, "queue")) is None:
        return None
    from . import pubsub

    return pubsub.ack(queue, receipt, cfg)


@hookimpl
def jitr_dead_letter(queue: str, message: QueueMessage, reason: str, settings: Settings) -> bool | None:
    if (cfg := _mine(settings, "queue")) is None:
        return None
    from . import pubsub

    return pubsub.dead_letter(queue, message, reason, cfg)


@hookimpl
def jitr_dead_letters(queue: str, settings: Settings) -> Sequence[ReceivedMessage] | None:
    if (cfg := _mine(settings, "queue")) is None:
        return None
    from . import pubsub

    return pubsub.dead_letters(queue, cfg)


# -- state store -------------------------------------------------------------------------------


@hookimpl
def jitr_store_runner(record: Record, expected_version: int | None, settings: Settings) -> Written | None:
    if (cfg := _mine(settings, "store")) is None:
        return None
    from . import firestore

    return firestore.store(record, expected_version, cfg)


@hookimpl
def jitr_load_record(kind: str, key: str, settings: Settings) -> Loaded | None:
    if (cfg := _mine(settings, "store")) is None:
        return None
    from . import firestore

    return firestore.load(kind, key, cfg)


@hookimpl
def jitr_query_records(query: RecordQuery, settings: Settings) -> RecordPage | None:
    if (cfg := _mine(settings, "store")) is None:
        return None
    from . import firestore

    return firestore.query(query, cfg)


@hookimpl
def jitr_delete_record(kind: str, key: str, expected_version: int | None, settings: Settings) -> Written | None:
    if (cfg := _mine(settings, "store")) is None:
        return None
    from . import firestore

    return firestore.delete(kind, key, expected_version, cfg)


@hookimpl
def jitr_purge_expired(now: float, settings: Settings) -> int | None:
    """Firestore's TTL policy deletes expired documents; loads and queries already hide them."""
    if _mine(settings, "store") is None:
        return None
    return 0


# -- secrets and startup script ----------------------------------------------------------------


@hookimpl
def jitr_fetch_secret(name: str, reference: str, settings: Settings) -> str | None:
    if (cfg := _mine(settings, "secrets")) is None:
        return None
    from . import secrets

    return secrets.fetch(name, reference, cfg)


@hookimpl
def jitr_store_secret(name: str, reference: str, value: Secret, settings: Settings) -> bool | None:
    if (cfg := _mine(settings, "secrets")) is None:
        return None
    from . import secrets

    return secrets.store(name, reference, value, cfg)


@hookimpl
def jitr_render_startup_script(context: ScriptContext) -> Sequence[Fragment] | None:
    if context.provider != PROVIDER:
        return None
    return fragments.fragments(context)


@hookimpl
def jitr_emit_metrics(samples: Sequence[Sample], settings: Settings) -> None:
    """On GCP (the queues are Pub/Sub, so the functions run on Cloud Run): structured log entries on stdout."""
    if settings.provider("queue") == PROVIDER:
        from .metrics import write_entries

        write_entries(samples)
