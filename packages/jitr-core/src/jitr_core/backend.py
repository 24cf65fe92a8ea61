"""A typed facade over ``pm.hook``: one method per provider hook, bound to the settings.

Services call this, never ``pm.hook`` directly, so a missing provider is reported as a
:class:`~jitr_core.errors.NoProviderError` naming the role instead of a silent ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pluggy
from pluggy import HookCaller, HookImpl

from .errors import NoProviderError, PluginError, SettingsError
from .metrics import Metrics, Sample
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
from .plugins import describe_broken, disabled_plugins
from .secret import Secret, read_local_secret, write_local_secret
from .settings import Settings
from .startup import Fragment, ScriptContext, assemble

T = TypeVar("T")
LOCAL_SECRET_SCHEMES = ("env:", "file:")
metrics_log = logging.getLogger("jitr.metrics")


def _pluggy_executor() -> object:
    """pluggy's own executor, which call monitoring replaces; it is private, so None if it moves
    (every call then goes through pluggy)."""
    try:
        from pluggy._callers import _multicall
    except ImportError:  # pragma: no cover - every pluggy >=1.3,<2 has it
        return None
    return _multicall


PLUGGY_EXECUTOR = _pluggy_executor()


class FirstAnswer:
    """A ``firstresult`` hook called as pluggy calls it (the implementations in pluggy's order, the
    first answer that is not None wins, an exception raised as it is), without pluggy's work per
    call (checking the arguments, copying the list, a loop written for wrappers): the webhook
    enqueues on every delivery.

    It applies while every implementation takes all the hook's arguments and none is a wrapper, and
    nothing watches the calls (``add_hookcall_monitoring``, ``enable_tracing``); otherwise the hook
    is called through pluggy. The implementations are compared with pluggy's on every call, so a
    plugin registered or unregistered later is called (or not) from its next call on.
    """

    __slots__ = ("_argnames", "_caller", "_pm", "_state")

    def __init__(self, pm: pluggy.PluginManager, caller: HookCaller) -> None:
        if caller.spec is None or not caller.spec.opts.get("firstresult"):
            raise PluginError(f"{caller.name} is not a firstresult hook of this plugin manager")
        self._pm = pm
        self._caller = caller
        self._argnames = caller.spec.argnames
        # pluggy's implementations when last compared, and the functions to call (None: call through pluggy);
        # one attribute, so that threads calling at once read a consistent pair
        self._state: tuple[list[HookImpl], tuple[Callable[..., Any], ...] | None] = ([], ())

    def __call__(self, *args: Any) -> Any:
        """The first answer; ``args`` are the hook's arguments, in the order of its specification."""
        impls = self._caller.get_hookimpls()
        known, calls = self._state
        if impls != known:  # a HookImpl equals itself only
            calls = self._plan(impls)
            self._state = (impls, calls)
        executor = getattr(self._pm, "_inner_hookexec", None)
        if calls is None or PLUGGY_EXECUTOR is None or executor is not PLUGGY_EXECUTOR:  # monitoring replaces it
            return self._caller(**dict(zip(self._argnames, args, strict=True)))
        for call in calls:
            result = call(*args)
            if result is not None:
                return result
        return None

    def _plan(self, impls: list[HookImpl]) -> tuple[Callable[..., Any], ...] | None:
        """The functions to call, in pluggy's order (the last in its list first), or None for pluggy."""
        for impl in impls:
            if impl.hookwrapper or impl.wrapper or impl.kwargnames or impl.argnames != self._argnames:
                return None
        return tuple(impl.function for impl in reversed(impls))


# a plugin's name, its implementation and the arguments it takes
_Plugged = tuple[str, Callable[..., Any], tuple[str, ...]]


class EachPlugin:
    """A collecting hook called on every plugin on its own, so that each answer and each exception
    is known by the plugin's name (pluggy returns the answers without their plugins and stops at
    the first exception).

    The implementations are called in pluggy's order (the last registered first), each with the
    arguments it takes. A plugin wrapping the hook, or a monitor watching the calls
    (``add_hookcall_monitoring``, ``enable_tracing``), makes each plugin's call go through pluggy
    instead, with the other implementations left out. As in :class:`FirstAnswer`, pluggy's
    implementations are compared on every call, so a plugin registered later (``jitr serve``'s
    Prometheus registry) is called from the next call on.
    """

    __slots__ = ("_caller", "_pm", "_state")

    def __init__(self, pm: pluggy.PluginManager, caller: HookCaller) -> None:
        self._pm = pm
        self._caller = caller
        # pluggy's implementations when last compared, those to call and whether a wrapper was left out;
        # one attribute, so that threads calling at once read a consistent state
        self._state: tuple[list[HookImpl], tuple[_Plugged, ...], bool] = ([], (), False)

    def __call__(
        self, arguments: Mapping[str, Any], failed: Callable[[str, Exception], None] | None = None
    ) -> list[tuple[str, Any]]:
        """Each plugin's name and answer (None included).

        :param arguments: the hook's arguments by name.
        :param failed: called with a plugin's name and its ``Exception``, after which the next plugin
            is called; without it the exception is raised as it is.
        """
        impls = self._caller.get_hookimpls()
        known, plugged, wrapped = self._state
        if impls != known:  # a HookImpl equals itself only
            kept = [impl for impl in reversed(impls) if not (impl.hookwrapper or impl.wrapper)]
            plugged = tuple((impl.plugin_name, impl.function, tuple(impl.argnames)) for impl in kept)
            wrapped = len(kept) != len(impls)
            self._state = (impls, plugged, wrapped)
        executor = getattr(self._pm, "_inner_hookexec", None)
        direct = not wrapped and PLUGGY_EXECUTOR is not None and executor is PLUGGY_EXECUTOR
        answers: list[tuple[str, Any]] = []
        for name, function, argnames in plugged:
            try:
                if direct:
                    answer = function(*[arguments[arg] for arg in argnames])
                else:  # through pluggy, so that wrappers and monitors see the call
                    others = [i.plugin for i in impls if i.plugin_name != name and not (i.hookwrapper or i.wrapper)]
                    answer = next(iter(self._pm.subset_hook_caller(self._caller.name, others)(**arguments)), None)
            except Exception as exc:
                if failed is None:
                    raise
                failed(name, exc)
                continue
            answers.append((name, answer))
        return answers


def _emit_failed(name: str, exc: Exception, samples: int) -> None:
    """One exporter down (its agent, its socket) must not silence the others, nor fail the caller."""
    metrics_log.warning(
        "metrics not emitted by one plugin; the other plugins got them",
        extra={"plugin": name, "samples": samples, "reason": f"{type(exc).__name__}: {exc}"},
    )


class Backend:
    """The VM, queue, store and secrets providers chosen by the settings."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings
        self._hook = pm.hook
        self._enqueue = FirstAnswer(pm, pm.hook.jitr_enqueue)  # a hook's caller stays as plugins come and go
        self._emit_each = EachPlugin(pm, pm.hook.jitr_emit_metrics)  # every exporter gets the batch, whichever raises
        self.metrics = Metrics(self._emit)
        self._render = EachPlugin(pm, pm.hook.jitr_render_startup_script)

    def _emit(self, samples: Sequence[Sample]) -> None:
        self._emit_each(
            {"samples": samples, "settings": self.settings},
            lambda name, exc: _emit_failed(name, exc, len(samples)),
        )

    def _answer(self, role: str, hook: str, result: T | None) -> T:
        if result is None:
            provider = self.settings.provider(role)
            raise NoProviderError(
                role, provider, hook, describe_broken(self.pm), disabled=provider in disabled_plugins(self.pm)
            )
        return result

    def _call(self, role: str, hook: str, **kwargs: Any) -> Any:
        result = getattr(self._hook, hook)(settings=self.settings, **kwargs)
        return self._answer(role, hook, result)

    # VMs
    def launch_vm(self, request: LaunchRequest) -> LaunchResult:
        result: LaunchResult = self._call("vm", "jitr_launch_vm", request=request)
        return result

    def terminate_vm(self, vm_id: str) -> bool:
        result: bool = self._call("vm", "jitr_terminate_vm", vm_id=vm_id)
        return result

    def list_vms(self) -> Sequence[VMInfo]:
        result: Sequence[VMInfo] = self._call("vm", "jitr_list_vms")
        return result

    def user_data_limit(self, provider: str | None = None) -> int | None:
        """The startup-script size limit VM provider ``provider`` (default: the configured one) declares."""
        name = provider or self.settings.provider("vm")
        limit: int | None = self._hook.jitr_user_data_limit(provider=name, settings=self.settings)
        return limit

    # VM identity
    def verify_vm_identity(self, provider: str, proof: Mapping[str, str], audience: str) -> VMIdentity:
        """The identity a VM of ``provider`` proved; raises IdentityError for a bad proof.

        Raises NoProviderError (role ``vm``, naming ``provider``) when no plugin verifies that
        provider's proofs, which the broker should answer as a refusal, not as a VM's fault.
        """
        result: VMIdentity | None = self._hook.jitr_verify_vm_identity(
            provider=provider, proof=proof, audience=audience, settings=self.settings
        )
        if result is None:
            raise NoProviderError(
                "vm",
                provider,
                "jitr_verify_vm_identity",
                describe_broken(self.pm),
                disabled=provider in disabled_plugins(self.pm),
            )
        return result

    # queues
    def enqueue(self, queue: str, message: QueueMessage, delay_s: int = 0) -> str:
        result: str | None = self._enqueue(queue, message, delay_s, self.settings)
        return self._answer("queue", "jitr_enqueue", result)

    def receive(self, queue: str, max_messages: int = 10, visibility_timeout_s: int = 60) -> Sequence[ReceivedMessage]:
        result: Sequence[ReceivedMessage] = self._call(
            "queue",
            "jitr_receive_messages",
            queue=queue,
            max_messages=max_messages,
            visibility_timeout_s=visibility_timeout_s,
        )
        return result

    def ack(self, queue: str, receipt: str) -> bool:
        result: bool = self._call("queue", "jitr_ack_message", queue=queue, receipt=receipt)
        return result

    def dead_letter(self, queue: str, message: QueueMessage, reason: str) -> bool:
        result: bool = self._call("queue", "jitr_dead_letter", queue=queue, message=message, reason=reason)
        self.metrics.record("dead_letters", queue=queue)
        return result

    def dead_letters(self, queue: str) -> Sequence[ReceivedMessage]:
        result: Sequence[ReceivedMessage] = self._call("queue", "jitr_dead_letters", queue=queue)
        return result

    # state store
    def create(self, record: Record) -> bool:
        """Create-if-absent: True only for the one writer that created it."""
        written: Written = self._call("store", "jitr_store_runner", record=record, expected_version=None)
        return written.ok

    def replace(self, record: Record, expected_version: int) -> bool:
        """Write ``record`` only if the stored version is still ``expected_version``."""
        written: Written = self._call("store", "jitr_store_runner", record=record, expected_version=expected_version)
        return written.ok

    def load(self, kind: str, key: str) -> Record | None:
        loaded: Loaded = self._call("store", "jitr_load_record", kind=kind, key=key)
        return loaded.record

    def query(self, query: RecordQuery) -> RecordPage:
        result: RecordPage = self._call("store", "jitr_query_records", query=query)
        return result

    def query_all(self, query: RecordQuery) -> Iterator[Record]:
        """Every record matching ``query``, following the pages."""
        page = self.query(query)
        yield from page.records
        while page.cursor is not None:
            page = self.query(replace(query, cursor=page.cursor))
            yield from page.records

    def delete(self, kind: str, key: str, expected_version: int | None = None) -> bool:
        written: Written = self._call(
            "store", "jitr_delete_record", kind=kind, key=key, expected_version=expected_version
        )
        return written.ok

    def claim_runner(self, record: Record, pool_max: int, global_max: int) -> Admission | None:
        """Create a runner claim within the caps, counted by the store; None when the store does not count."""
        admission: Admission | None = self._hook.jitr_claim_runner(
            record=record, pool_max=pool_max, global_max=global_max, settings=self.settings
        )
        return admission

    def repair_runner_counts(self) -> int:
        """Counts the store corrected to match its records (0 for a store that does not count)."""
        corrected: int | None = self._hook.jitr_repair_runner_counts(settings=self.settings)
        return corrected or 0

    def purge_expired(self, now: float) -> int:
        result: int = self._call("store", "jitr_purge_expired", now=now)
        return result

    # secrets
    def secret(self, name: str) -> str:
        """The value of a named secret, from the reference in ``settings.secrets``.

        ``env:`` and ``file:`` references are read here whatever the secrets provider, so a Lambda
        environment variable works as well as a Secrets Manager ARN.
        """
        reference = self.settings.secrets.get(name, "")
        if reference.startswith(LOCAL_SECRET_SCHEMES):
            return read_local_secret(name, reference)
        result: str = self._call("secrets", "jitr_fetch_secret", name=name, reference=reference)
        return result

    def store_secret(self, name: str, value: Secret, reference: str | None = None) -> bool:
        """Store a named secret where ``reference`` (default: ``settings.secrets[name]``) points.

        ``file:`` references are written here whatever the secrets provider (mode 0600), as they
        are read here; ``env:`` references cannot be written and raise a SettingsError naming
        them. True when the secret was created, False when an existing one got the new value.
        """
        reference = self.settings.secrets.get(name, "") if reference is None else reference
        if reference.startswith(LOCAL_SECRET_SCHEMES):
            return write_local_secret(name, reference, value)
        if not reference:
            raise SettingsError(f"secret {name!r} has no reference; set [secrets] {name} (JITR_SECRETS_{name.upper()})")
        result: bool = self._call("secrets", "jitr_store_secret", name=name, reference=reference, value=value)
        return result

    # startup script
    def check_startup_plugins(self) -> None:
        """Raise :class:`PluginError` naming the broken plugins while any is broken, as one may add a fragment."""
        if broken := describe_broken(self.pm):
            raise PluginError(f"no startup script is rendered while a plugin is broken: {broken}")

    def startup_fragments(self, context: ScriptContext) -> list[Fragment]:
        """Every plugin's fragments; refused while a plugin is broken."""
        self.check_startup_plugins()
        fragments: list[Fragment] = []
        for name, answer in self._render({"context": context}):
            fragments.extend(_fragments(name, answer))
        return fragments

    def render_startup_script(self, context: ScriptContext, limit_bytes: int | None = None) -> str:
        return assemble(self.startup_fragments(context), limit_bytes)


def _fragments(plugin: str, answer: object) -> Sequence[Fragment]:
    """A plugin's answer to ``jitr_render_startup_script`` as fragments; a PluginError naming it for a wrong type."""
    if answer is None:
        return ()
    if isinstance(answer, Fragment):
        return (answer,)
    if isinstance(answer, Sequence) and not isinstance(answer, str | bytes):
        wrong = [i for i, item in enumerate(answer) if not isinstance(item, Fragment)]
        if not wrong:
            return answer
        found = f"a {type(answer).__name__} whose item {wrong[0]} is a {type(answer[wrong[0]]).__name__}"
    else:
        found = f"a {type(answer).__name__}"
    # the types only, never the values: a plugin's text may hold anything
    raise PluginError(
        f"plugin {plugin!r} returned {found} from jitr_render_startup_script; "
        "expected a Fragment, a sequence of Fragments or None"
    )
