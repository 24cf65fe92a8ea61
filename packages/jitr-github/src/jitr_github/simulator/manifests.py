"""GitHub App manifests: the registration a manifest asks for, and the one-hour codes exchanged for the App.

GitHub's flow: a form posts ``manifest`` (JSON) and ``state`` to ``/settings/apps/new`` (or
``/organizations/ORG/settings/apps/new``); after the person clicks "Create", GitHub redirects to
the manifest's ``redirect_url`` with ``code`` and ``state``; ``POST /app-manifests/{code}/conversions``
then creates the App and answers its id, key, client secret and webhook secret, once. A code
unused for an hour expires. The simulator clicks "Create" at once and keeps every App it
creates, with its own key pair, beside the simulator's App (see :class:`~.auth.AppIdentities`).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .auth import AppIdentities, AppIdentity, generate_key

CODE_TTL_S = 3600.0
MAX_NAME_LENGTH = 34
MAX_CALLBACK_URLS = 10
FIRST_APP_ID = 1_000_001
# Permission -> accepted access levels, as ``app-permissions`` in GitHub's REST description lists them.
PERMISSIONS: Mapping[str, frozenset[str]] = {
    **{
        name: frozenset({"read", "write"})
        for name in [
            "actions",
            "administration",
            "artifact_metadata",
            "attestations",
            "checks",
            "code_quality",
            "codespaces",
            "contents",
            "dependabot_secrets",
            "deployments",
            "discussions",
            "environments",
            "issues",
            "merge_queues",
            "metadata",
            "packages",
            "pages",
            "pull_requests",
            "repository_custom_properties",
            "repository_hooks",
            "secret_scanning_alerts",
            "secrets",
            "security_events",
            "single_file",
            "statuses",
            "vulnerability_alerts",
            "custom_properties_for_organizations",
            "members",
            "organization_administration",
            "organization_custom_roles",
            "organization_custom_org_roles",
            "organization_copilot_seat_management",
            "organization_copilot_agent_settings",
            "organization_announcement_banners",
            "organization_hooks",
            "organization_personal_access_tokens",
            "organization_personal_access_token_requests",
            "organization_packages",
            "organization_secrets",
            "organization_self_hosted_runners",
            "organization_user_blocking",
            "email_addresses",
            "followers",
            "git_ssh_keys",
            "gpg_keys",
            "interaction_limits",
            "starring",
        ]
    },
    **{name: frozenset({"read", "write", "admin"}) for name in ("repository_projects", "organization_projects")},
    **{
        "organization_custom_properties": frozenset({"read", "write", "admin"}),
        "enterprise_custom_properties_for_organizations": frozenset({"read", "write", "admin"}),
        "workflows": frozenset({"write"}),
        "profile": frozenset({"write"}),
        "organization_events": frozenset({"read"}),
        "organization_plan": frozenset({"read"}),
    },
}
# Events an App may subscribe to only with a permission (GitHub refuses the registration otherwise).
EVENT_PERMISSIONS = {
    "workflow_job": "actions",
    "workflow_run": "actions",
    "check_run": "checks",
    "check_suite": "checks",
    "issues": "issues",
    "pull_request": "pull_requests",
    "push": "contents",
}
_EVENT = re.compile(r"^[a-z][a-z_]{1,63}$")


class ManifestError(Exception):
    """The manifest cannot register an App; ``errors`` are GitHub's validation messages."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class CodeNotFound(Exception):
    """The code is unknown, was already exchanged, or expired."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest: what the App will be."""

    name: str
    url: str
    redirect_url: str
    hook_url: str | None = None
    hook_active: bool = True
    description: str | None = None
    public: bool = False
    permissions: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    callback_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Owner:
    login: str
    id: int
    type: str  # "User" or "Organization"


@dataclass(frozen=True, slots=True)
class CreatedApp:
    """An App registered from a manifest; its secrets are shown once, in the conversion's answer."""

    id: int
    slug: str
    client_id: str
    owner: Owner
    manifest: Manifest
    created_at: float
    identity: AppIdentity = field(repr=False)
    client_secret: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)

    @property
    def private_key_pem(self) -> str:
        return self.identity.private_key_pem

    def secrets(self) -> list[str]:
        found = [self.private_key_pem, self.client_secret]
        return found + ([self.webhook_secret] if self.webhook_secret else [])


@dataclass(slots=True)
class _Pending:
    manifest: Manifest
    owner: Owner
    issued_at: float


def slugify(name: str) -> str:
    """GitHub's slug of an App name: lower case, runs of other characters become one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_manifest(text: str) -> Manifest:
    """Validate a manifest's JSON text as GitHub's registration page does; raises :class:`ManifestError`."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ManifestError(["Manifest is not valid JSON"]) from None
    if not isinstance(data, dict):
        raise ManifestError(["Manifest must be a JSON object"])
    errors: list[str] = []
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("Name can't be blank")
    elif len(name) > MAX_NAME_LENGTH:
        errors.append(f"Name is too long (maximum is {MAX_NAME_LENGTH} characters)")
    elif not slugify(name):
        errors.append("Name must contain a letter or a digit")
    url = _url(data, "url", "Homepage URL", errors, required=True)
    redirect_url = _url(data, "redirect_url", "Redirect URL", errors, required=True)
    hook = data.get("hook_attributes")
    hook_url, hook_active = None, True
    if hook is not None:
        if not isinstance(hook, dict):
            errors.append("hook_attributes must be an object")
        else:
            hook_url = _url(hook, "url", "Webhook URL", errors, required=True)
            hook_active = hook.get("active", True)
            if not isinstance(hook_active, bool):
                errors.append("hook_attributes.active must be true or false")
    public = data.get("public", False)
    if not isinstance(public, bool):
        errors.append("public must be true or false")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        errors.append("description must be a string")
    permissions = _permissions(data.get("default_permissions", {}), errors)
    events = _events(data.get("default_events", []), permissions, errors)
    callbacks = data.get("callback_urls", [])
    if not isinstance(callbacks, list) or len(callbacks) > MAX_CALLBACK_URLS:
        errors.append(f"callback_urls must be a list of at most {MAX_CALLBACK_URLS} URLs")
        callbacks = []
    for callback in callbacks:
        _url({"url": callback}, "url", "Callback URL", errors, required=True)
    if events and hook_url is None:
        errors.append("Hook attributes url can't be blank when the App subscribes to events")
    if errors:
        raise ManifestError(errors)
    return Manifest(
        name=str(name).strip(),
        url=str(url),
        redirect_url=str(redirect_url),
        hook_url=hook_url,
        hook_active=bool(hook_active),
        description=description,
        public=bool(public),
        permissions=permissions,
        events=events,
        callback_urls=tuple(str(c) for c in callbacks),
    )


def _url(data: Mapping[str, Any], key: str, label: str, errors: list[str], required: bool) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        errors.append(f"{label} must be an http(s) URL, found {value!r}"[:200])
        return None
    return str(value)


def _permissions(raw: Any, errors: list[str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        errors.append("default_permissions must be an object of permission name to access level")
        return {}
    found: dict[str, str] = {}
    for name, access in raw.items():
        allowed = PERMISSIONS.get(name)
        if allowed is None:
            errors.append(f"Default permission {name!r} is not a GitHub App permission"[:200])
        elif access not in allowed:
            errors.append(f"Default permission {name!r} cannot be {access!r}; expected one of {sorted(allowed)}"[:200])
        else:
            found[name] = access
    return found


def _events(raw: Any, permissions: Mapping[str, str], errors: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(e, str) and _EVENT.match(e) for e in raw):
        errors.append("default_events must be a list of webhook event names")
        return ()
    for event in raw:
        needed = EVENT_PERMISSIONS.get(event)
        if needed is not None and needed not in permissions:
            errors.append(f"Default events unsupported: {event} needs the {needed!r} permission")
    return tuple(dict.fromkeys(raw))


def redirect_location(redirect_url: str, code: str, state: str | None) -> str:
    """``redirect_url`` with ``code`` (and ``state``, when the form sent one) added to its query."""
    parts = urlsplit(redirect_url)
    extra = urlencode({"code": code, **({"state": state} if state is not None else {})})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class ManifestFlow:
    """Pending codes and the Apps made from them. Thread-safe."""

    def __init__(
        self, clock: Callable[[], float], identities: AppIdentities, taken_names: Callable[[], set[str]]
    ) -> None:
        self._clock = clock
        self._identities = identities
        self._taken_names = taken_names
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._apps: dict[int, CreatedApp] = {}
        self._next_id = itertools.count(FIRST_APP_ID)

    def submit(self, manifest: Manifest, owner: Owner) -> str:
        """The person clicked "Create": a new single-use code for the manifest."""
        with self._lock:
            self._check_name(manifest.name)
            code = secrets.token_hex(10)
            self._pending[code] = _Pending(manifest, owner, self._clock())
            return code

    def convert(self, code: str) -> CreatedApp:
        """Create the App of a code, once; :class:`CodeNotFound` for an unknown, used or expired code."""
        with self._lock:
            pending = self._pending.pop(code, None)
            if pending is None or self._clock() - pending.issued_at > CODE_TTL_S:
                raise CodeNotFound(code)
            self._check_name(pending.manifest.name)
            app_id = next(self._next_id)
            client_id = "Iv23li" + secrets.token_hex(7)
            app = CreatedApp(
                id=app_id,
                slug=slugify(pending.manifest.name),
                client_id=client_id,
                owner=pending.owner,
                manifest=pending.manifest,
                created_at=self._clock(),
                identity=AppIdentity(app_id, client_id, generate_key()),
                client_secret=secrets.token_hex(20),
                webhook_secret=secrets.token_hex(20) if pending.manifest.hook_url else None,
            )
            self._apps[app_id] = app
        self._identities.add(app.identity)
        return app

    def app(self, app_id: int) -> CreatedApp | None:
        with self._lock:
            return self._apps.get(app_id)

    def apps(self) -> list[CreatedApp]:
        """Apps created from manifests, oldest first."""
        with self._lock:
            return list(self._apps.values())

    def secrets(self) -> list[str]:
        """Keys and secrets of every App created (for tests proving none leaks)."""
        return [value for app in self.apps() for value in app.secrets()]

    def _check_name(self, name: str) -> None:
        slug = slugify(name)
        taken = self._taken_names() | {app.slug for app in self._apps.values()}
        if slug in taken:
            raise ManifestError([f"Name {name!r} is already taken"])
