"""The ``[gcp]`` settings (``JITR_GCP_*``), validated in one place.

Every module of the plugin reads its settings through :func:`gcp_config`, so a missing or
malformed value fails the same way wherever it is first needed, and the error names the
variable the user sets (``JITR_GCP_PROJECT``) or the TOML key (``gcp.project in jitr.toml``).
This module imports no cloud SDK: the plugin module imports it at discovery time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

PROVIDER = "gcp"
QUEUES = ("jobs", "lifecycle")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # n2-standard-8, e2-custom-4-8192: no dots
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_RESOURCE = re.compile(rf"^{_NAME}$")
_NETWORK = re.compile(rf"^(?:(?:projects/[a-z][-a-z0-9.:]*/)?global/networks/)?{_NAME}$")
_SUBNETWORK = re.compile(rf"^(?:(?:projects/[a-z][-a-z0-9.:]*/)?regions/{_NAME}/subnetworks/)?{_NAME}$")
_NETWORK_HINT = "a VPC network name or global/networks/NAME"
_SUBNETWORK_HINT = "a subnetwork name or regions/R/subnetworks/NAME"
_PUBSUB = r"(?!goog)[A-Za-z][A-Za-z0-9._~+%-]{2,254}"
_EMAIL = re.compile(r"^(default|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})$")
_SCOPE = re.compile(r"^https://www\.googleapis\.com/auth/[A-Za-z0-9._/-]+$")
_COLLECTION = re.compile(r"^(?!__.*__$)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,1499}$")
_DATABASE = re.compile(r"^(\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9])$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?/?$")
_CERTS_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?/[!-~]*$")
# Google's keys for the identity tokens of GCE instances, as {key id: PEM certificate}
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Full resource names of one logical queue: its topic, the pull subscription and its dead letters."""

    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str


@dataclass(frozen=True, slots=True)
class GcpConfig:
    """Validated ``[gcp]`` settings; see docs/gcp-configuration.md for each key."""

    project: str
    zones: tuple[str, ...]
    network: str
    subnetwork: str
    external_ip: bool
    service_account: str
    scopes: tuple[str, ...]
    disk_type: str
    operation_timeout_s: int
    queues: Mapping[str, QueueNames]
    max_deliveries: int
    pull_wait_s: int
    firestore_database: str
    firestore_collection: str
    compute_endpoint: str
    secretmanager_endpoint: str
    secret_cache_ttl_s: int
    # where the broker fetches Google's keys for VM identity tokens (a fake key server in tests)
    identity_certs_url: str = GOOGLE_CERTS_URL

    def queue(self, name: str) -> QueueNames:
        """The resources of logical queue ``name``; anything but ``jobs``/``lifecycle`` is a caller bug."""
        try:
            return self.queues[name]
        except KeyError:
            raise SettingsError(f"unknown queue {name!r}; the GCP backend serves {list(QUEUES)}") from None


_KNOWN_KEYS = frozenset(
    {
        "project",
        "zones",
        "network",
        "subnetwork",
        "external_ip",
        "service_account",
        "scopes",
        "disk_type",
        "operation_timeout_s",
        "max_deliveries",
        "pull_wait_s",
        "firestore_database",
        "firestore_collection",
        "compute_endpoint",
        "secretmanager_endpoint",
        "secret_cache_ttl_s",
        "identity_certs_url",
        *(
            f"{q}_{part}"
            for q in QUEUES
            for part in ("topic", "subscription", "dead_letter_topic", "dead_letter_subscription")
        ),
    }
)

_cache: dict[tuple[str, tuple[tuple[str, Any], ...]], GcpConfig] = {}
_cache_lock = threading.Lock()


def gcp_config(settings: Settings) -> GcpConfig:
    """The validated ``[gcp]`` section of ``settings`` (parsed once per distinct section)."""
    section = settings.section(PROVIDER)
    key = (settings.source, tuple(sorted((k, _freeze(v)) for k, v in section.items())))
    with _cache_lock:
        found = _cache.get(key)
    if found is None:
        found = _parse(section, lambda key: settings.setting_name(PROVIDER, key))
        with _cache_lock:
            _cache[key] = found
    _check_pool_networks(settings)
    if settings.provider("vm") == PROVIDER:
        _check_sizing_types(settings)
    return found


def _check_sizing_types(settings: Settings) -> None:
    """A pool's ``machine_sizes`` and ``machine_type_labels`` must be (or can match) GCE machine types."""
    for index, pool in enumerate(settings.pools):
        for i, size in enumerate(pool.machine_sizes):
            if not _MACHINE_TYPE.match(size.machine_type):
                name = settings.setting_name("pools", index, "machine_sizes", i)
                raise SettingsError(
                    f"{name} must be a GCE machine type such as n2-standard-8, found {size.machine_type!r}"
                )
        for i, pattern in enumerate(pool.machine_type_labels):
            literal = pattern.replace("*", "a").replace("?", "a")
            if not _MACHINE_TYPE.match(literal):
                name = settings.setting_name("pools", index, "machine_type_labels", i)
                raise SettingsError(f"{name} can match no GCE machine type (such as n2-standard-8), found {pattern!r}")


def _check_pool_networks(settings: Settings) -> None:
    """A pool's ``options.network``/``options.subnetwork`` (its own VPC) must name one."""
    checks = (("network", _NETWORK, _NETWORK_HINT), ("subnetwork", _SUBNETWORK, _SUBNETWORK_HINT))
    for index, pool in enumerate(settings.pools):
        for key, pattern, hint in checks:
            value = pool.options.get(key)
            if value is not None and not (isinstance(value, str) and pattern.match(value)):
                name = settings.setting_name("pools", index, "options", key)
                raise SettingsError(f"{name} must be {hint}, found {value!r}")


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _parse(raw: Mapping[str, Any], name: Callable[[str], str]) -> GcpConfig:
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise SettingsError(f"{name(unknown[0])} is not a GCP setting; known: {sorted(_KNOWN_KEYS)}")
    r = _Reader(raw, name)
    project = r.text("project", None, _PROJECT, "a project id such as my-project-123")
    queues = {q: _queue(r, project, q) for q in QUEUES}
    return GcpConfig(
        project=project,
        zones=r.words("zones", _ZONE, "zone names such as us-central1-a"),
        network=r.text("network", "default", _NETWORK, _NETWORK_HINT),
        subnetwork=r.text("subnetwork", "", _SUBNETWORK, _SUBNETWORK_HINT),
        external_ip=r.boolean("external_ip", False),
        service_account=r.text("service_account", "", _EMAIL, "a service account email or 'default'"),
        scopes=r.words("scopes", _SCOPE, "OAuth scope URLs", default=(CLOUD_PLATFORM_SCOPE,)),
        disk_type=r.text("disk_type", "pd-balanced", _RESOURCE, "a disk type such as pd-balanced"),
        operation_timeout_s=r.integer("operation_timeout_s", 120, low=5, high=3600),
        queues=queues,
        max_deliveries=r.integer("max_deliveries", 5, low=1, high=100),
        pull_wait_s=r.integer("pull_wait_s", 10, low=1, high=600),
        firestore_database=r.text("firestore_database", "(default)", _DATABASE, "a Firestore database id"),
        firestore_collection=r.text("firestore_collection", "jitr", _COLLECTION, "a Firestore collection id"),
        compute_endpoint=r.text("compute_endpoint", "", _URL, "an http(s) URL such as http://127.0.0.1:8080"),
        secretmanager_endpoint=r.text("secretmanager_endpoint", "", _URL, "an http(s) URL"),
        secret_cache_ttl_s=r.integer("secret_cache_ttl_s", 300, low=0, high=86400),
        identity_certs_url=r.text("identity_certs_url", GOOGLE_CERTS_URL, _CERTS_URL, "an http(s) URL"),
    )


def _queue(r: _Reader, project: str, queue: str) -> QueueNames:
    def resource(part: str, kind: str, default: str) -> str:
        pattern = re.compile(rf"^(?:projects/[a-z][-a-z0-9.:]*/{kind}/)?{_PUBSUB}$")
        value = r.text(f"{queue}_{part}", default, pattern, f"a Pub/Sub {kind[:-1]} name or projects/P/{kind}/NAME")
        return value if "/" in value else f"projects/{project}/{kind}/{value}"

    return QueueNames(
        topic=resource("topic", "topics", f"jitr-{queue}"),
        subscription=resource("subscription", "subscriptions", f"jitr-{queue}-pull"),
        dead_letter_topic=resource("dead_letter_topic", "topics", f"jitr-{queue}-dead-letter"),
        dead_letter_subscription=resource("dead_letter_subscription", "subscriptions", f"jitr-{queue}-dead-letter"),
    )


class _Reader:
    """Reads one key, accepting the string forms environment variables carry."""

    def __init__(self, raw: Mapping[str, Any], name: Callable[[str], str]) -> None:
        self.raw = raw
        self.name = name

    def text(self, key: str, default: str | None, pattern: re.Pattern[str], expected: str) -> str:
        value = self.raw.get(key, default)
        if value is None:
            raise SettingsError(f"{self.name(key)} is required ({expected})")
        if not isinstance(value, str):
            raise SettingsError(f"{self.name(key)} must be {expected}, found {value!r}")
        value = value.strip()
        if value == "" and default == "":
            return ""
        if pattern.match(value):
            return value
        raise SettingsError(f"{self.name(key)} must be {expected}, found {value!r}")

    def words(
        self, key: str, pattern: re.Pattern[str], expected: str, default: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        value = self.raw.get(key, default)
        if isinstance(value, str):
            value = [w for w in (part.strip() for part in value.split(",")) if w]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{self.name(key)} must be a list of {expected}, found {value!r}")
        for item in value:
            if not isinstance(item, str) or not pattern.match(item):
                raise SettingsError(f"{self.name(key)} must be a list of {expected}; {item!r} is not")
        return tuple(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise SettingsError(f"{self.name(key)} must be a whole number, found {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{self.name(key)} must be a whole number, found {value!r}")
        if not low <= value <= high:
            raise SettingsError(f"{self.name(key)} must be between {low} and {high}, found {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise SettingsError(f"{self.name(key)} must be true or false, found {value!r}")
        return value
