"""Hook implementations of the embedded backend (core's built-in default, registered ``trylast``).

Each answers only when the settings choose provider ``embedded`` for its role, and delegates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import IdentityError
from ..hookspecs import hookimpl
from ..model import (
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
from ..secret import Secret
from ..secret import read_local_secret as fetch_secret
from ..secret import write_local_secret as store_secret
from ..settings import Settings
from ..startup import Fragment, ScriptContext
from . import script

if TYPE_CHECKING:
    from .instance import Embedded

PROVIDER = "embedded"


def _embedded(settings: Settings) -> Embedded:
    """The embedded backend of ``settings``. Its modules (SQLite among them) load on first use, not
    when the plugin is discovered: a cloud function's cold start does not pay for them."""
    from .instance import open_embedded

    return open_embedded(settings)


@hookimpl(trylast=True)
def jitr_launch_vm(request: LaunchRequest, settings: Settings) -> LaunchResult | None:
    if settings.provider("vm") != PROVIDER:
        return None
    return _embedded(settings).vms.launch(request)


@hookimpl(trylast=True)
def jitr_terminate_vm(vm_id: str, settings: Settings) -> bool | None:
    if settings.provider("vm") != PROVIDER:
        return None
    return _embedded(settings).vms.terminate(vm_id)


@hookimpl(trylast=True)
def jitr_list_vms(settings: Settings) -> Sequence[VMInfo] | None:
    if settings.provider("vm") != PROVIDER:
        return None
    return _embedded(settings).vms.list()


@hookimpl(trylast=True)
def jitr_verify_vm_identity(
    provider: str, proof: Mapping[str, str], audience: str, settings: Settings
) -> VMIdentity | None:
    """A local VM's token, checked against the digest kept at its start (no audience: it names no URL)."""
    if provider != PROVIDER:
        return None
    if settings.provider("vm") != PROVIDER:
        raise IdentityError("embedded VMs are not in use here (the VM provider is not embedded)")
    return _embedded(settings).vms.identity(proof)


@hookimpl(trylast=True)
def jitr_enqueue(queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
    if settings.provider("queue") != PROVIDER:
        return None
    return _embedded(settings).queue.enqueue(queue, message, delay_s)


@hookimpl(trylast=True)
def jitr_receive_messages(
    queue: str, max_messages: int, visibility_timeout_s: int, settings: Settings
) -> Sequence[ReceivedMessage] | None:
    if settings.provider("queue") != PROVIDER:
        return None
    return _embedded(settings).queue.receive(queue, max_messages, visibility_timeout_s)


@hookimpl(trylast=True)
def jitr_ack_message(queue: str, receipt: str, settings: Settings) -> bool | None:
    if settings.provider("queue") != PROVIDER:
        return None
    return _embedded(settings).queue.ack(queue, receipt)


@hookimpl(trylast=True)
def jitr_dead_letter(queue: str, message: QueueMessage, reason: str, settings: Settings) -> bool | None:
    if settings.provider("queue") != PROVIDER:
        return None
    return _embedded(settings).queue.dead_letter(queue, message, reason)


@hookimpl(trylast=True)
def jitr_dead_letters(queue: str, settings: Settings) -> Sequence[ReceivedMessage] | None:
    if settings.provider("queue") != PROVIDER:
        return None
    return _embedded(settings).queue.dead_letters(queue)


@hookimpl(trylast=True)
def jitr_store_runner(record: Record, expected_version: int | None, settings: Settings) -> Written | None:
    if settings.provider("store") != PROVIDER:
        return None
    store = _embedded(settings).store
    return Written(store.create(record) if expected_version is None else store.replace(record, expected_version))


@hookimpl(trylast=True)
def jitr_load_record(kind: str, key: str, settings: Settings) -> Loaded | None:
    if settings.provider("store") != PROVIDER:
        return None
    return Loaded(_embedded(settings).store.load(kind, key))


@hookimpl(trylast=True)
def jitr_query_records(query: RecordQuery, settings: Settings) -> RecordPage | None:
    if settings.provider("store") != PROVIDER:
        return None
    return _embedded(settings).store.query(query)


@hookimpl(trylast=True)
def jitr_delete_record(kind: str, key: str, expected_version: int | None, settings: Settings) -> Written | None:
    if settings.provider("store") != PROVIDER:
        return None
    return Written(_embedded(settings).store.delete(kind, key, expected_version))


@hookimpl(trylast=True)
def jitr_purge_expired(now: float, settings: Settings) -> int | None:
    if settings.provider("store") != PROVIDER:
        return None
    embedded = _embedded(settings)
    purged = embedded.store.purge_expired(now)
    if settings.provider("queue") == PROVIDER:  # dead letters are kept as long as finished records
        purged += embedded.queue.prune_dead_letters(now - settings.finished_ttl_s)
    return purged


@hookimpl(trylast=True)
def jitr_fetch_secret(name: str, reference: str, settings: Settings) -> str | None:
    if settings.provider("secrets") != PROVIDER:
        return None
    return fetch_secret(name, reference)


@hookimpl(trylast=True)
def jitr_store_secret(name: str, reference: str, value: Secret, settings: Settings) -> bool | None:
    if settings.provider("secrets") != PROVIDER:
        return None
    return store_secret(name, reference, value)


@hookimpl(trylast=True)
def jitr_render_startup_script(context: ScriptContext) -> list[Fragment] | None:
    if context.provider != PROVIDER:
        return None
    return script.fragments(context)
