"""A fake of the Secret Manager v1 REST API: create and get secrets, add/disable versions, access them.

There is no Secret Manager emulator. This answers ``secrets.create`` (``?secretId=``, with the
``replication`` the API requires), ``secrets.get``, ``secrets.addVersion`` (checking a
``dataCrc32c`` the client sends), ``versions.disable`` and ``versions.access`` (a number or
``latest``, the most recently added version) with Google's resource and error shapes, so the real
``SecretManagerServiceClient`` (``transport="rest"``) can seed it, write to it and read from it.
:attr:`FakeSecretManager.accesses` counts reads, for cache tests; :attr:`FakeSecretManager.metadata`
holds each secret's resource (replication, labels).
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
_GET = re.compile(r"^/v1/projects/(?P<p>[^/]+)/secrets/(?P<s>[^/:]+)$")
_VERSION = re.compile(
    r"^/v1/projects/(?P<p>[^/]+)/secrets/(?P<s>[^/]+)/versions/(?P<v>[^/:]+):(?P<verb>access|disable)$"
)


class FakeSecretManager(JsonServer):
    """In-memory secrets of any project, served over HTTP."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.accesses = 0

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            if method == "POST" and (m := _CREATE.match(path)):
                return 200, self._create(m["p"], query.get("secretId", ""), body)
            if method == "GET" and (m := _GET.match(path)):
                name = f"projects/{m['p']}/secrets/{m['s']}"
                if name not in self.metadata:
                    raise ApiError(404, f"Secret [{name}] not found.")
                return 200, self.metadata[name]
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

    def _create(self, project: str, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _SECRET_ID.match(secret_id):
            raise ApiError(400, f"Secret ID [{secret_id}] is invalid.")
        replication = body.get("replication")
        if not isinstance(replication, dict) or not ({"automatic", "userManaged"} & set(replication)):
            raise ApiError(400, "Secret.replication is required: set automatic or userManaged replication.")
        name = f"projects/{project}/secrets/{secret_id}"
        if name in self.secrets:
            raise ApiError(409, f"Secret [{name}] already exists.", status="ALREADY_EXISTS")
        self.secrets[name] = []
        resource = {"name": name, "createTime": _now(), "replication": replication, "etag": '"1"'}
        if body.get("labels"):
            resource["labels"] = dict(body["labels"])
        self.metadata[name] = resource
        return resource

    def _add(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        if secret not in self.secrets:
            raise ApiError(404, f"Secret [{secret}] not found.")
        payload = body.get("payload", {})
        data = payload.get("data", "")
        checksum = payload.get("dataCrc32c")
        if checksum is not None and int(checksum) != crc32c(base64.b64decode(data)):
            raise ApiError(400, "Checksum mismatch: the payload does not match its data_crc32c.")
        versions = self.secrets[secret]
        version = {
            "name": f"{secret}/versions/{len(versions) + 1}",
            "createTime": _now(),
            "state": "ENABLED",
            "data": data,
            "clientSpecifiedPayloadChecksum": checksum is not None,
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
            name = self._create(f"{project}", secret_id, {"replication": {"automatic": {}}})["name"]
            self._add(name, {"payload": {"data": base64.b64encode(value.encode()).decode()}})
        return str(name)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the checksum Secret Manager uses for payloads."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
