"""A fake of the Secret Manager v1 REST API: create secrets, add/disable versions, access them.

There is no Secret Manager emulator. This answers ``secrets.create`` (``?secretId=``),
``secrets.addVersion``, ``versions.disable`` and ``versions.access`` (a number or ``latest``, the
most recently added version) with Google's resource and error shapes, so the real
``SecretManagerServiceClient`` (``transport="rest"``) can both seed it and read from it.
:attr:`FakeSecretManager.accesses` counts reads, for cache tests.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from .fakehttp import ApiError, JsonServer

_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_CREATE = re.compile(r"^/v1/projects/(?P<p>[^/]+)/secrets$")
_ADD = re.compile(r"^/v1/projects/(?P<p>[^/]+)/secrets/(?P<s>[^/:]+):addVersion$")
_VERSION = re.compile(
    r"^/v1/projects/(?P<p>[^/]+)/secrets/(?P<s>[^/]+)/versions/(?P<v>[^/:]+):(?P<verb>access|disable)$"
)


class FakeSecretManager(JsonServer):
    """In-memory secrets of any project, served over HTTP."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        self.accesses = 0

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            if method == "POST" and (m := _CREATE.match(path)):
                return 200, self._create(m["p"], query.get("secretId", ""))
            if method == "POST" and (m := _ADD.match(path)):
                return 200, self._add(f"projects/{m['p']}/secrets/{m['s']}", body)
            if m := _VERSION.match(path):
                secret = f"projects/{m['p']}/secrets/{m['s']}"
                if m["verb"] == "access" and method == "GET":
                    return 200, self._access(secret, m["v"])
                if m["verb"] == "disable" and method == "POST":
                    version = self._version(secret, m["v"])
                    version["state"] = "DISABLED"
                    return 200, {k: v for k, v in version.items() if k != "data"}
        raise ApiError(404, f"no route for {method} {path}")

    def _create(self, project: str, secret_id: str) -> dict[str, Any]:
        if not _SECRET_ID.match(secret_id):
            raise ApiError(400, f"Secret ID [{secret_id}] is invalid.")
        name = f"projects/{project}/secrets/{secret_id}"
        if name in self.secrets:
            raise ApiError(409, f"Secret [{name}] already exists.")
        self.secrets[name] = []
        return {"name": name, "createTime": _now(), "replication": {"automatic": {}}}

    def _add(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        if secret not in self.secrets:
            raise ApiError(404, f"Secret [{secret}] not found.")
        data = body.get("payload", {}).get("data", "")
        versions = self.secrets[secret]
        version = {
            "name": f"{secret}/versions/{len(versions) + 1}",
            "createTime": _now(),
            "state": "ENABLED",
            "data": data,
        }
        versions.append(version)
        return {k: v for k, v in version.items() if k != "data"}

    def _version(self, secret: str, version: str) -> dict[str, Any]:
        versions = self.secrets.get(secret) or []
        if version == "latest" and versions:
            return versions[-1]
        if version.isdigit() and 0 < int(version) <= len(versions):
            return versions[int(version) - 1]
        raise ApiError(404, f"Secret Version [{secret}/versions/{version}] not found.")

    def _access(self, secret: str, version: str) -> dict[str, Any]:
        self.accesses += 1
        if secret not in self.secrets:
            raise ApiError(404, f"Secret [{secret}] not found or has no versions.")
        found = self._version(secret, version)
        if found["state"] != "ENABLED":
            raise ApiError(
                400, f"Secret Version [{found['name']}] is in {found['state']} state.", status="FAILED_PRECONDITION"
            )
        return {"name": found["name"], "payload": {"data": found["data"]}}

    def put(self, project: str, secret_id: str, value: str) -> str:
        """Create a secret with one version holding ``value``; returns the secret's resource name."""
        with self.lock:
            name = self._create(f"{project}", secret_id)["name"]
            self._add(name, {"payload": {"data": base64.b64encode(value.encode()).decode()}})
        return str(name)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
