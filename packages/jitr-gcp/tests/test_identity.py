"""GCE identity tokens: real RS256 JWTs checked by google-auth against a fake key server over HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import BackendError, IdentityError
from jitr_gcp.identity import KeyCache, verify_identity_token
from jitr_gcp.testing.backend import PROJECT, gcp_backend, gcp_settings
from jitr_gcp.testing.fakehttp import JsonServer
from jitr_gcp.testing.identity import GoogleKey

AUDIENCE = "https://broker.example/v1/handoff"
CERTS_PATH = "/oauth2/v1/certs"


class KeyServer(JsonServer):
    """Google's ``oauth2/v1/certs`` endpoint: ``{key id: PEM certificate}``; counts its fetches."""

    def __init__(self) -> None:
        super().__init__()
        self.certificates: dict[str, str] = {}
        self.fetches = 0

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method != "GET" or path != CERTS_PATH:
            return 404, {"error": "not found"}
        with self.lock:
            self.fetches += 1
            return 200, dict(self.certificates)

    @property
    def certs_url(self) -> str:
        return self.url + CERTS_PATH


class Signer(GoogleKey):
    """A key listed (or not) by the key server under its ``kid``."""

    def token(self, **changes: Any) -> str:
        """A token as the metadata server issues it with format=full, with ``changes`` to its claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "azp": "112233445566778899000",
            "email": "runner@jitr-test.iam.gserviceaccount.com",
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": "112233445566778899000",
            "google": {
                "compute_engine": {
                    "instance_creation_timestamp": now - 60,
                    "instance_id": "4567890123456789012",
                    "instance_name": "jitr-linux-1-1",
                    "project_id": PROJECT,
                    "project_number": 123456789012,
                    "zone": "us-central1-a",
                }
            },
            **changes,
        }
        return self.sign({k: v for k, v in claims.items() if v is not None})


@pytest.fixture(scope="module")
def key_server() -> Iterator[KeyServer]:
    server = KeyServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def google() -> Signer:
    return Signer("google-key-1")


@pytest.fixture
def listed(key_server: KeyServer, google: Signer) -> KeyServer:
    with key_server.lock:
        key_server.certificates = {google.kid: google.certificate}
    return key_server


@pytest.fixture
def backend(listed: KeyServer) -> Backend:
    return gcp_backend(gcp_settings({"identity_certs_url": listed.certs_url}))


def _refused(backend: Backend, proof: Mapping[str, Any], match: str | None = None) -> IdentityError:
    with pytest.raises(IdentityError, match=match) as caught:
        backend.verify_vm_identity("gcp", proof, AUDIENCE)
    message = str(caught.value)
    token = proof.get("token") if isinstance(proof, Mapping) else None
    if isinstance(token, str):
        for part in token.split("."):
            assert len(part) < 8 or part[:16] not in message
    assert len(message) < 200
    return caught.value


def test_a_google_signed_token_proves_the_instance(backend: Backend, google: Signer) -> None:
    identity = backend.verify_vm_identity("gcp", {"token": google.token()}, AUDIENCE)
    assert (identity.provider, identity.vm_id, identity.zone, identity.account) == (
        "gcp",
        "us-central1-a/jitr-linux-1-1",
        "us-central1-a",
        PROJECT,
    )
    assert abs(identity.issued_at - time.time()) < 60


def test_google_keys_are_fetched_once_and_cached(listed: KeyServer, google: Signer) -> None:
    keys = KeyCache()
    before = listed.fetches
    for _ in range(3):
        verify_identity_token({"token": google.token()}, AUDIENCE, PROJECT, listed.certs_url, keys)
    assert listed.fetches == before + 1


def test_a_key_google_rotated_in_is_fetched_again(listed: KeyServer, google: Signer) -> None:
    keys = KeyCache(min_refresh_s=0)
    verify_identity_token({"token": google.token()}, AUDIENCE, PROJECT, listed.certs_url, keys)
    rotated = Signer("google-key-2")
    with listed.lock:
        listed.certificates[rotated.kid] = rotated.certificate
    identity = verify_identity_token({"token": rotated.token()}, AUDIENCE, PROJECT, listed.certs_url, keys)
    assert identity.vm_id == "us-central1-a/jitr-linux-1-1"


def test_an_unlisted_key_id_does_not_refetch_within_the_refresh_interval(listed: KeyServer, google: Signer) -> None:
    keys = KeyCache()
    verify_identity_token({"token": google.token()}, AUDIENCE, PROJECT, listed.certs_url, keys)
    before = listed.fetches
    for _ in range(3):
        with pytest.raises(IdentityError, match="key Google does not list"):
            verify_identity_token({"token": Signer("made-up").token()}, AUDIENCE, PROJECT, listed.certs_url, keys)
    assert listed.fetches == before


def test_another_audience_is_refused(backend: Backend, google: Signer) -> None:
    _refused(backend, {"token": google.token(aud="https://elsewhere.example/")}, "another audience")
    _refused(backend, {"token": google.token(aud=None)}, "another audience")


def test_another_project_is_refused(backend: Backend, google: Signer) -> None:
    compute = {"instance_id": "1", "zone": "us-central1-a", "project_id": "someone-else-123"}
    _refused(backend, {"token": google.token(google={"compute_engine": compute})}, "not the configured project")


def test_an_expired_token_is_refused(backend: Backend, google: Signer) -> None:
    now = int(time.time())
    _refused(backend, {"token": google.token(iat=now - 7200, exp=now - 3600)}, "expired")
    _refused(backend, {"token": google.token(iat=now + 3600, exp=now + 7200)}, "not valid yet")


def test_a_token_without_compute_engine_claims_is_refused(backend: Backend, google: Signer) -> None:
    _refused(backend, {"token": google.token(google=None)}, "format=full")
    _refused(backend, {"token": google.token(google={"compute_engine": "x"})}, "format=full")
    compute = {"instance_id": "1", "project_id": PROJECT}
    _refused(backend, {"token": google.token(google={"compute_engine": compute})}, "compute_engine.zone")


def test_another_issuer_is_refused(backend: Backend, google: Signer) -> None:
    _refused(backend, {"token": google.token(iss="https://evil.example")}, "not issued by Google")
    _refused(backend, {"token": google.token(iss=None)}, "not issued by Google")


def test_a_tampered_token_is_refused(backend: Backend, google: Signer) -> None:
    header, payload, signature = google.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["google"]["compute_engine"]["instance_id"] = "1111111111111111111"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    _refused(backend, {"token": f"{header}.{forged}.{signature}"}, "signature does not verify")


def test_a_token_signed_by_another_key_under_googles_key_id_is_refused(backend: Backend, google: Signer) -> None:
    impostor = Signer(google.kid)
    _refused(backend, {"token": impostor.token()}, "signature does not verify")


def test_an_unsigned_token_is_refused(backend: Backend, google: Signer) -> None:
    header, payload, _ = google.token().split(".")
    none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    _refused(backend, {"token": f"{none}.{payload}.AAAA"})
    _refused(backend, {"token": f"{header}.{payload}."})


@pytest.mark.parametrize(
    "proof",
    [
        {},
        {"token": ""},
        {"token": 12},
        {"token": "not-a-jwt"},
        {"token": "a.b.c"},
        {"token": "e30.e30.e30"},
        {"token": "a.b.c\n"},
        {"token": base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.AAAA"},  # nested header
        {"token": "e30." + base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".AAAA"},  # nested claims
        {"token": "x" * 9000 + ".a.b"},
        {"document": "{}"},
        ["token"],
    ],
    ids=lambda proof: repr(proof)[:30],
)
def test_malformed_and_oversized_proofs_are_refused(backend: Backend, proof: Any) -> None:
    _refused(backend, proof)


def test_an_unreachable_key_server_is_a_backend_error_not_a_refusal(key_server: KeyServer, google: Signer) -> None:
    keys = KeyCache()
    with pytest.raises(BackendError, match="could not fetch Google's keys"):
        verify_identity_token({"token": google.token()}, AUDIENCE, PROJECT, key_server.url + "/missing", keys)
    with pytest.raises(BackendError, match="could not fetch Google's keys"):
        verify_identity_token({"token": google.token()}, AUDIENCE, PROJECT, "http://127.0.0.1:9/certs", keys)


def test_the_vm_id_is_jitrs_zone_and_name_of_the_instance_and_a_bad_name_is_refused(
    backend: Backend, google: Signer
) -> None:
    base = {"instance_id": "1", "zone": "us-central1-a", "project_id": PROJECT}
    for name in (None, "", "../other", "Jitr-Upper", "x" * 64):
        compute = {**base, "instance_name": name} if name is not None else base
        _refused(backend, {"token": google.token(google={"compute_engine": compute})}, "compute_engine.instance_name")
