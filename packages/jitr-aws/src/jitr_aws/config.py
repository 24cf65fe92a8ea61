"""The ``[aws]`` settings (``JITR_AWS_*``), parsed and validated in one place.

Every error names the variable the user typed (``JITR_AWS_REGION``) or the TOML key
(``aws.region in jitr.toml``). Keys a role needs are required only when that role's provider is
``aws``, so a deployment that keeps, say, its secrets elsewhere need not name a secret setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

PROVIDER = "aws"
USER_DATA_LIMIT = 16 * 1024  # bytes of raw EC2 user data, before base64
QUEUES = ("jobs", "lifecycle")

_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d{1,2}$")
_URL = re.compile(r"^https?://[^\s]+$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_PROFILE_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
_PROFILE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]{1,512}$")
_TEMPLATE = re.compile(r"^(lt-[0-9a-f]{8,17}|[A-Za-z0-9().\-/_]{3,128})(:(\$Latest|\$Default|\d+))?$")
_KEY_NAME = re.compile(r"^[\x20-\x7e]{1,255}$")
_PATH = re.compile(r"^[^\x00-\x1f]{1,4096}$")
_DEVICE = re.compile(r"^/dev/[a-z0-9]{2,16}$")
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_RESERVED_TAGS = ("managed-by", "Name")
# EC2 takes 50 tags on a resource; a runner's VM carries 7 of jitr's own (Name, managed-by, and
# jitr-runner, -pool, -job, -attempt, -client-token)
MAX_EXTRA_TAGS = 50 - 7
_ACCOUNT = re.compile(r"^\d{12}$")
# CloudWatch's namespace characters; "AWS/" is AWS's own services' prefix, refused to others
_NAMESPACE = re.compile(r"^(?!AWS/)[A-Za-z0-9 .\-_/#:]{1,255}\Z")
_NAMESPACE_RULE = "a CloudWatch namespace (letters, digits, . - _ / # : and spaces, at most 255) not starting with AWS/"
METRICS_NAMESPACE = "jitr"
# How long after its launch (the identity document's pendingTime) a VM may prove itself: a cold
# VM asks the broker within minutes of boot; the hour covers slow images and retries. A warm VM
# asks until its deadline (Settings.warm_deadline_s), which the default is raised to.
IDENTITY_MAX_AGE_S = 3600
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,31}\.[a-z0-9-]{1,31}$")  # family.size: c6i.4xlarge, m7i-flex.large

# Keys that shape a VM; a pool's ``options`` may override each of them.
VM_KEYS = (
    "launch_template",
    "security_group_ids",
    "instance_profile",
    "key_name",
    "associate_public_ip",
    "root_device_name",
)
KNOWN_KEYS = (
    "region",
    "endpoint_url",
    "table",
    "jobs_queue_url",
    "lifecycle_queue_url",
    "jobs_dlq_url",
    "lifecycle_dlq_url",
    "tags",
    "secret_cache_ttl_s",
    "identity_accounts",
    "identity_max_age_s",
    "identity_certificates",
    "metrics_namespace",
    *VM_KEYS,
)


@dataclass(frozen=True, slots=True)
class VMShape:
    """What every launched instance gets besides the pool's machine type, image and subnet."""

    launch_template: str | None = None
    security_group_ids: tuple[str, ...] = ()
    instance_profile: str | None = None
    key_name: str | None = None
    associate_public_ip: bool = False
    root_device_name: str | None = None


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """The validated ``[aws]`` section."""

    region: str
    endpoint_url: str | None = None
    table: str | None = None
    jobs_queue_url: str | None = None
    lifecycle_queue_url: str | None = None
    jobs_dlq_url: str | None = None
    lifecycle_dlq_url: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    secret_cache_ttl_s: int = 300
    vm: VMShape = VMShape()
    # VM identity documents the broker accepts: from these accounts (default: jitr's own),
    # launched at most this long ago, signed by a shipped certificate or one in this directory
    identity_accounts: tuple[str, ...] = ()
    identity_max_age_s: int = IDENTITY_MAX_AGE_S
    identity_certificates: str | None = None
    # the CloudWatch namespace of jitr's metrics: one per deployment sharing an account and region
    metrics_namespace: str = METRICS_NAMESPACE

    def queue_url(self, queue: str) -> str:
        urls = {"jobs": self.jobs_queue_url, "lifecycle": self.lifecycle_queue_url}
        if queue not in urls:
            raise ValueError(f"unknown queue {queue!r}; jitr's queues are {QUEUES}")
        url = urls[queue]
        if url is None:
            raise SettingsError(f"no URL is configured for the {queue} queue (JITR_AWS_{queue.upper()}_QUEUE_URL)")
        return url

    def dlq_url(self, queue: str) -> str | None:
        self.queue_url(queue)
        return {"jobs": self.jobs_dlq_url, "lifecycle": self.lifecycle_dlq_url}[queue]


_last: tuple[Settings, AwsConfig] | None = None


def aws_config(settings: Settings) -> AwsConfig:
    """The ``[aws]`` section of ``settings``, validated once per settings object."""
    global _last
    cached = _last
    if cached is not None and cached[0] is settings:
        return cached[1]
    config = parse(settings)
    _last = (settings, config)
    return config


def parse(settings: Settings) -> AwsConfig:
    """Validate ``[aws]`` and the pools' aws options; raise :class:`SettingsError` naming the variable."""
    section = settings.section(PROVIDER)

    def name(key: str) -> str:
        return settings.setting_name(PROVIDER, key)

    for key in section:
        if key not in KNOWN_KEYS:
            raise SettingsError(f"{name(key)} is not an aws setting; known: {sorted(KNOWN_KEYS)}")
    region = section.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise SettingsError(f"{name('region')} is required (the AWS region, for example eu-west-1)")
    roles = {role for role in ("vm", "queue", "store", "secrets") if settings.provider(role) == PROVIDER}
    required = {"table"} if "store" in roles else set()
    if "queue" in roles:
        required |= {"jobs_queue_url", "lifecycle_queue_url"}
    for key in sorted(required):
        if not section.get(key):
            raise SettingsError(f"{name(key)} is required when the {_role_of(key)} provider is aws")

    def get(key: str, check: Callable[[Any, str], Any], default: Any = None) -> Any:
        value = section.get(key)
        return default if value is None or value == "" else check(value, name(key))

    for index, pool in enumerate(settings.pools):
        vm_shape(pool.options, _pool_namer(settings, index), VMShape())  # fail at start, not at launch
    if settings.provider("vm") == PROVIDER:
        _check_sizing_types(settings)
    return AwsConfig(
        region=_pattern(_REGION, "an AWS region such as eu-west-1")(region, name("region")),
        endpoint_url=get("endpoint_url", _pattern(_URL, "an http(s) URL")),
        table=get("table", _pattern(_TABLE, "a DynamoDB table name")),
        jobs_queue_url=get("jobs_queue_url", _pattern(_URL, "an SQS queue URL")),
        lifecycle_queue_url=get("lifecycle_queue_url", _pattern(_URL, "an SQS queue URL")),
        jobs_dlq_url=get("jobs_dlq_url", _pattern(_URL, "an SQS queue URL")),
        lifecycle_dlq_url=get("lifecycle_dlq_url", _pattern(_URL, "an SQS queue URL")),
        tags=get("tags", _tags, ()),
        secret_cache_ttl_s=get("secret_cache_ttl_s", _seconds, 300),
        vm=vm_shape(section, name, VMShape()),
        identity_accounts=get("identity_accounts", _accounts, ()),
        identity_max_age_s=_identity_max_age(settings, get("identity_max_age_s", _seconds), name),
        identity_certificates=get("identity_certificates", _pattern(_PATH, "a directory of <region>.pem files")),
        metrics_namespace=get("metrics_namespace", _pattern(_NAMESPACE, _NAMESPACE_RULE), METRICS_NAMESPACE),
    )


def vm_shape(values: Mapping[str, Any], name: Callable[[str], str], base: VMShape) -> VMShape:
    """``base`` with the VM keys present in ``values`` (the ``[aws]`` section or a pool's options)."""

    def get(key: str, check: Callable[[Any, str], Any]) -> Any:
        value = values.get(key)
        return getattr(base, key) if value is None or value == "" else check(value, name(key))

    return VMShape(
        launch_template=get("launch_template", _pattern(_TEMPLATE, "a launch template id or name[:version]")),
        security_group_ids=get("security_group_ids", _security_groups),
        instance_profile=get("instance_profile", _instance_profile),
        key_name=get("key_name", _pattern(_KEY_NAME, "an EC2 key pair name")),
        associate_public_ip=get("associate_public_ip", _boolean),
        root_device_name=get("root_device_name", _pattern(_DEVICE, "a device name such as /dev/xvda")),
    )


def _check_sizing_types(settings: Settings) -> None:
    """A pool's ``machine_sizes`` and wildcard-free ``machine_type_labels`` must be EC2 instance types."""
    for index, pool in enumerate(settings.pools):
        named = [("machine_sizes", i, size.machine_type) for i, size in enumerate(pool.machine_sizes)]
        named += [
            ("machine_type_labels", i, p)
            for i, p in enumerate(pool.machine_type_labels)
            if "*" not in p and "?" not in p
        ]
        for key, i, machine_type in named:
            if not _INSTANCE_TYPE.match(machine_type):
                where = settings.setting_name("pools", index, key, i)
                raise SettingsError(f"{where} must be an EC2 instance type such as c6i.4xlarge, found {machine_type!r}")


def _pool_namer(settings: Settings, index: int) -> Callable[[str], str]:
    return lambda key: settings.setting_name("pools", index, "options", key)


def _role_of(key: str) -> str:
    return "store" if key == "table" else "queue"


def _pattern(pattern: re.Pattern[str], what: str) -> Callable[[Any, str], str]:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise SettingsError(f"{name} must be {what}, found {value!r}")
        return value

    return check


def _words(value: Any, name: str) -> list[Any]:
    if isinstance(value, str):
        return [w for w in (part.strip() for part in value.split(",")) if w]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise SettingsError(f"{name} must be a list or a comma-separated string, found {type(value).__name__}")


def _accounts(value: Any, name: str) -> tuple[str, ...]:
    accounts = [str(account).strip() for account in _words(value, name)]
    for account in accounts:
        if not _ACCOUNT.match(account):
            raise SettingsError(f"{name} has an invalid AWS account id {account!r}; expected 12 digits")
    return tuple(accounts)


def _security_groups(value: Any, name: str) -> tuple[str, ...]:
    groups = _words(value, name)
    for group in groups:
        if not isinstance(group, str) or not _SECURITY_GROUP.match(group):
            raise SettingsError(f"{name} has an invalid security group id {group!r}; expected sg-<hex>")
    return tuple(groups)


def _instance_profile(value: Any, name: str) -> str:
    if isinstance(value, str) and (_PROFILE_NAME.match(value) or _PROFILE_ARN.match(value)):
        return value
    raise SettingsError(f"{name} must be an instance profile name or ARN, found {value!r}")


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise SettingsError(f"{name} must be true or false, found {value!r}")


def _identity_max_age(settings: Settings, given: int | None, name: Callable[[str], str]) -> int:
    """``identity_max_age_s``: at least as long as a warm VM may wait before its proof is checked."""
    warm = max((settings.warm_deadline_s(pool) for pool in settings.pools if pool.keeps_warm), default=0)
    if given is None:
        return max(IDENTITY_MAX_AGE_S, warm)
    if given < warm and settings.provider("vm") == PROVIDER:
        raise SettingsError(
            f"{name('identity_max_age_s')} ({given}) is shorter than a warm VM may wait before it proves itself "
            f"({warm} s: boot_timeout_s + the longest warm_max_idle_s + warm_hold_s); raise it or unset it"
        )
    return given


def _seconds(value: Any, name: str) -> int:
    try:
        seconds = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise SettingsError(f"{name} must be a whole number of seconds, at least 0, found {value!r}")
    return seconds


def _tags(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """Extra tags: a TOML table, or ``key=value`` pairs separated by commas in the variable."""
    if isinstance(value, str):
        pairs = []
        for item in _words(value, name):
            key, sep, val = item.partition("=")
            if not sep:
                raise SettingsError(f"{name} must be key=value pairs separated by commas, found {item!r}")
            pairs.append((key.strip(), val.strip()))
    elif isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        raise SettingsError(f"{name} must be a table or key=value pairs, found {type(value).__name__}")
    if len(pairs) > MAX_EXTRA_TAGS:
        raise SettingsError(
            f"{name} has {len(pairs)} tags; at most {MAX_EXTRA_TAGS} fit beside jitr's 7 in EC2's 50 per resource"
        )
    for key, val in pairs:
        if not _TAG_KEY.match(key) or key.startswith("aws:") or key.startswith("jitr-") or key in _RESERVED_TAGS:
            raise SettingsError(
                f"{name} has an invalid tag key {key!r}; keys are 1-128 characters, and aws:*, jitr-*, "
                f"{', '.join(_RESERVED_TAGS)} are reserved"
            )
        if not isinstance(val, str) or len(val) > 256:
            raise SettingsError(f"{name} tag {key!r} must have a string value of at most 256 characters")
    return tuple(sorted(pairs))
