"""Every hook a jitr plugin can implement.

Provider hooks (VMs, queues, the state store, secrets) are ``firstresult``: each receives the
:class:`~jitr_core.settings.Settings` and returns ``None`` when the configured provider for its
role (``settings.provider("vm")``, ...) is not its own, so the first plugin that owns the role
answers. Results that can mean "absent" are wrapped (:class:`~jitr_core.model.Loaded`,
:class:`~jitr_core.model.Written`) so that ``None`` keeps meaning "not my call".

Use :class:`jitr_core.backend.Backend` to call them: it raises
:class:`~jitr_core.errors.NoProviderError` naming the role when nobody answered.

``jitr_render_startup_script`` and ``jitr_emit_metrics`` are collecting hooks: every
implementation is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pluggy

from .metrics import Sample
from .model import (
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
from .secret import Secret
from .settings import Settings
from .startup import Fragment, ScriptContext

PROJECT = "jitr"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- VMs ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jitr_launch_vm(request: LaunchRequest, settings: Settings) -> LaunchResult | None:
    """Start one VM for one runner, or find the one already started with the same token.

    :param request: machine type, placement, spot, image, startup script and the
        ``idempotency_token`` to hand the cloud (EC2 ``ClientToken``, GCE ``requestId``): calling
        twice with one token must yield one VM.
    :param settings: the settings; answer only when ``settings.provider("vm")`` is yours.
    :raises CapacityError: no capacity or quota for this candidate; core tries the next one.
    :raises LaunchError: any other refusal.

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_terminate_vm(vm_id: str, settings: Settings) -> bool | None:
    """Delete a VM. Returns True when it was deleted or already gone.

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_list_vms(settings: Settings) -> Sequence[VMInfo] | None:
    """List every VM jitr manages (found by its tags/labels), across placements and pages.

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_user_data_limit(provider: str, settings: Settings) -> int | None:
    """The most bytes of startup script (user data, metadata) VM provider ``provider`` accepts.

    :param provider: a VM provider name; answer only when it is yours (the provider being
        rendered for need not be the configured one, as in ``jitr render-startup-script``).
    Core refuses to launch with a larger script. Return None for a provider that is not yours;
    a provider that answers nobody has no limit.

    Combines: first non-None result. Added in 0.1.1.
    """


# -- VM identity -------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jitr_verify_vm_identity(
    provider: str, proof: Mapping[str, str], audience: str, settings: Settings
) -> VMIdentity | None:
    """Verify the identity proof a VM of VM provider ``provider`` presents to the broker.

    :param provider: the VM provider the caller claims (``aws``, ``gcp``, ``embedded``); answer
        only when it is yours, else return None.
    :param proof: the provider's proof, as strings: AWS ``{"document": <instance identity
        document JSON>, "signature": <its base64 signature>}``; GCP ``{"token": <the metadata
        server's identity JWT, format=full>}``; embedded ``{"token": <the per-VM token>}``.
        Never log it or put it in an error.
    :param audience: the broker's audience (its URL); a proof that names another audience is
        refused (GCP tokens carry one; AWS documents and embedded tokens do not).
    :raises IdentityError: the proof is malformed, oversized, forged, expired or from another
        account/project; the message is safe to log.
    Returns the verified :class:`~jitr_core.model.VMIdentity`. Verifiers check validity only:
    replay is stopped by the broker, which answers each VM once through its own record write.

    Combines: first non-None result. Added in 0.2.0.
    """


# -- queues ------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jitr_enqueue(queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
    """Send one message to the logical queue ``queue`` (``jobs`` or ``lifecycle``).

    :param delay_s: seconds before the message may be delivered (0 for at once).
    Returns the provider's message id. Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_receive_messages(
    queue: str, max_messages: int, visibility_timeout_s: int, settings: Settings
) -> Sequence[ReceivedMessage] | None:
    """Take up to ``max_messages`` visible messages, hiding each for ``visibility_timeout_s``.

    Used by pull-based runtimes (the embedded workers, tests); push runtimes (Lambda, Cloud Run)
    receive from the platform. A message received more times than the queue allows goes to its
    dead-letter queue instead of being returned. Combines: first non-None. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_ack_message(queue: str, receipt: str, settings: Settings) -> bool | None:
    """Delete a received message so it is never delivered again.

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_dead_letter(queue: str, message: QueueMessage, reason: str, settings: Settings) -> bool | None:
    """Put a message straight into ``queue``'s dead-letter queue, with ``reason`` as an attribute.

    Used for poison messages (malformed, wrong type): they are kept for an operator instead of
    being retried until the receive limit. Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_dead_letters(queue: str, settings: Settings) -> Sequence[ReceivedMessage] | None:
    """Peek at the messages that reached ``queue``'s dead-letter queue (for ``jitr status``).

    Combines: first non-None result. Added in 0.1.0.
    """


# -- state store -------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jitr_store_runner(record: Record, expected_version: int | None, settings: Settings) -> Written | None:
    """Write a record to the state store, conditionally.

    :param record: the record to write (runner, job, delivery or lease).
    :param expected_version: ``None`` creates the record only if no record with its kind and key
        exists (the claim); an int replaces it only if the stored ``version`` equals it.
    Returns ``Written(ok=False)`` when the condition did not hold. Concurrent writers with the
    same condition: exactly one gets ``ok=True``. Combines: first non-None. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_load_record(kind: str, key: str, settings: Settings) -> Loaded | None:
    """Read one record; ``Loaded(None)`` when absent or expired.

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_query_records(query: RecordQuery, settings: Settings) -> RecordPage | None:
    """One page of records of a kind in a state (optionally one pool, written before a time).

    Must use an index: its cost grows with the matching records, never with the table.
    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_delete_record(kind: str, key: str, expected_version: int | None, settings: Settings) -> Written | None:
    """Delete a record (only at ``expected_version`` when given).

    Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_claim_runner(record: Record, pool_max: int, global_max: int, settings: Settings) -> Admission | None:
    """Create the runner claim ``record`` only while its pool and all pools are under their caps.

    For stores that keep their own exact count of runners in flight (claimed, launched, busy),
    such as DynamoDB, whose index reads are eventually consistent. The claim and the count move
    together, so no burst passes a cap.

    :param record: a new runner record in state ``claimed``; created only if no live record with
        its kind and key exists, as by :func:`jitr_store_runner` with ``expected_version=None``.
    :param pool_max: at most this many runners of ``record.pool`` in flight, this one included.
    :param global_max: at most this many runners in flight over all pools, this one included.
    Returns ``Admission(True)``, or ``Admission(False, refused_by)`` naming ``"exists"``,
    ``"pool"`` or ``"global"``. A store that answers keeps its count exact through
    :func:`jitr_store_runner` and :func:`jitr_delete_record`: a runner record leaving flight (a
    replace into ``finished`` or ``retired``, a delete) leaves the count exactly once, however
    often the write is retried. Return None when the store does not count: core then creates the
    claim and counts the in-flight records with :func:`jitr_query_records`, which is exact on a
    store whose queries see every committed write (SQLite, Firestore).

    Combines: first non-None result. Added in 0.1.1.
    """


@hookspec(firstresult=True)
def jitr_repair_runner_counts(settings: Settings) -> int | None:
    """Bring a counting store's runner counts (see :func:`jitr_claim_runner`) back to its records.

    Called by scale-down under its lease: a count that drifted from the in-flight runner records
    (a record removed behind jitr's back, an interrupted write) is set to what the records say.
    Returns how many counts were corrected; None from a store that does not count.

    Combines: first non-None result. Added in 0.1.1.
    """


@hookspec(firstresult=True)
def jitr_purge_expired(now: float, settings: Settings) -> int | None:
    """Drop records whose ``expires_at`` has passed; returns how many.

    Stores with native TTL (DynamoDB, Firestore) return 0 and let the service do it; expired
    records must never be returned by loads or queries either way.
    Combines: first non-None result. Added in 0.1.0.
    """


# -- secrets -----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jitr_fetch_secret(name: str, reference: str, settings: Settings) -> str | None:
    """Return the value of the secret ``name`` (``webhook_secret``, ``github_app_private_key``).

    :param reference: where it lives, from ``settings.secrets[name]`` (an ARN, a resource name).
        ``env:VAR`` and ``file:/path`` references never reach this hook: core reads them itself.
    :raises SecretNotFoundError: it is yours but does not exist or is empty.
    Never log the value. Combines: first non-None result. Added in 0.1.0.
    """


@hookspec(firstresult=True)
def jitr_store_secret(name: str, reference: str, value: Secret, settings: Settings) -> bool | None:
    """Store ``value`` as the secret ``name``: create the secret, or give the existing one this value.

    Used by ``jitr github-app create`` to keep a new App's private key and webhook secret.
    :param name: jitr's name of the secret (``webhook_secret``, ``github_app_private_key``).
    :param reference: where it lives, in the form :func:`jitr_fetch_secret` reads (an ARN, a
        resource name); after the call, fetching ``reference`` returns ``value``. ``env:VAR``
        and ``file:/path`` references never reach this hook: core writes files itself and
        refuses environment variables.
    :param value: the secret; ``value.reveal()`` is the text to store. Never log it or put it
        in an error.
    :raises SettingsError: the reference is not one this provider can write.
    Returns True when the secret was created, False when an existing one got a new value.
    Combines: first non-None result. Added in 0.1.1.
    """


# -- startup script ----------------------------------------------------------------------------


@hookspec
def jitr_render_startup_script(context: ScriptContext) -> Sequence[Fragment] | Fragment | None:
    """Contribute fragments to a runner VM's startup script.

    :param context: runner name, pool, provider, runner version and the (secret) JIT config.
    Return fragments for named phases; return None to contribute nothing (check
    ``context.provider`` for provider-specific steps). Core orders every fragment by phase,
    then ``order``, then plugin name, and joins them.

    Combines: all results. Added in 0.1.0.
    """


# -- metrics -----------------------------------------------------------------------------------


@hookspec
def jitr_emit_metrics(samples: Sequence[Sample], settings: Settings) -> None:
    """Write a batch of metric samples where this backend's metrics are read.

    :param samples: what the services recorded since the last flush, in order; names, kinds
        and labels are :data:`jitr_core.metrics.CATALOGUE`'s and label values are already
        sanitised. Called once per function invocation (Lambda, Cloud Run) or per sample
        (``jitr serve``), never with an empty batch.
    :param settings: the settings; emit only when this process's runtime is yours (a cloud
        plugin: ``settings.provider("queue")`` is its own), otherwise do nothing.
    Must not raise for a sample and must not do network I/O on the caller's time: write a log
    line (CloudWatch EMF, a structured entry) or update an in-process registry. An exception
    is logged by core and the batch is lost, never the work it describes.

    Combines: every implementation is called; results are ignored. Added in 0.2.0.
    """
