"""EC2 instance identity verification: real RSA signatures, AWS's shipped certificates, hostile proofs."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jitr_aws.identity import shipped_keys
from jitr_aws.testing import IdentitySigner
from jitr_core.backend import Backend
from jitr_core.errors import IdentityError, SettingsError
from jitr_core.plugins import JitrPluginManager
from jitr_core.settings import Settings

ACCOUNT = "111122223333"
REGION = "eu-west-1"
AUDIENCE = "https://broker.example/"
CERTIFICATES = Path(__file__).parents[1] / "src" / "jitr_aws" / "certificates"


SIGNER = IdentitySigner(ACCOUNT, REGION)  # AWS's key for REGION, as the certificates fixture trusts it


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A directory trusting the test signer for ``REGION`` (besides AWS's shipped certificate)."""
    return SIGNER.trust(tmp_path / "certificates")


def _backend(plugin_manager: JitrPluginManager, **aws: Any) -> Backend:
    section = {"region": REGION, "identity_accounts": [ACCOUNT], **aws}
    settings = Settings.from_mapping({"provider": "embedded", "vm_provider": "aws", "aws": section})
    return Backend(plugin_manager, settings)


@pytest.fixture
def backend(plugin_manager: JitrPluginManager, certificates: Path) -> Backend:
    return _backend(plugin_manager, identity_certificates=str(certificates))


def _refused(backend: Backend, proof: Mapping[str, Any], match: str | None = None) -> IdentityError:
    with pytest.raises(IdentityError, match=match) as caught:
        backend.verify_vm_identity("aws", proof, AUDIENCE)
    message = str(caught.value)
    for value in proof.values() if isinstance(proof, Mapping) else ():
        if isinstance(value, str) and len(value) > 20:
            assert value not in message
            assert value.replace("\n", "")[:40] not in message
    assert 'pendingTime": ' not in message and len(message) < 200
    return caught.value


def test_the_shipped_aws_certificates_parse_as_rsa_keys_per_region() -> None:
    keys = shipped_keys()
    assert {"us-east-1", "eu-west-1", "ap-northeast-1", "us-gov-west-1", "cn-north-1"} <= set(keys)
    assert len(keys) >= 36
    for region, found in keys.items():
        assert len(found) == 1 and isinstance(found[0], rsa.RSAPublicKey), region
    for path in CERTIFICATES.glob("*.pem"):
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        issuer = certificate.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert issuer in ("Amazon Web Services LLC", "Amazon.com Inc."), path.name


def test_a_signed_document_proves_the_instance(backend: Backend) -> None:
    document = SIGNER.document()
    identity = backend.verify_vm_identity("aws", SIGNER.prove(document), AUDIENCE)
    assert (identity.provider, identity.vm_id, identity.zone, identity.account) == (
        "aws",
        "i-0123456789abcdef0",
        f"{REGION}b",
        ACCOUNT,
    )
    assert time.time() - 200 < identity.issued_at <= time.time() - 100


def test_a_signature_on_one_line_verifies_too(backend: Backend) -> None:
    document = SIGNER.document()
    signature = SIGNER.sign(document).replace("\n", "")
    assert backend.verify_vm_identity("aws", {"document": document, "signature": signature}, AUDIENCE)


def test_a_document_whose_trailing_newline_a_shell_dropped_verifies(backend: Backend) -> None:
    document = SIGNER.document() + "\n"
    proof = {"document": document.rstrip("\n"), "signature": SIGNER.sign(document)}
    assert backend.verify_vm_identity("aws", proof, AUDIENCE).vm_id == "i-0123456789abcdef0"


def test_a_tampered_document_is_refused(backend: Backend) -> None:
    document = SIGNER.document()
    signature = SIGNER.sign(document)
    tampered = document.replace("i-0123456789abcdef0", "i-0fedcba9876543210")
    _refused(backend, {"document": tampered, "signature": signature}, "does not verify")
    relaid = json.dumps(json.loads(document))  # the same fields, other bytes
    _refused(backend, {"document": relaid, "signature": signature}, "does not verify")


def test_a_signature_by_another_key_is_refused(backend: Backend) -> None:
    document = SIGNER.document()
    forged = IdentitySigner(ACCOUNT, REGION).sign(document)  # a key of its own, which no one trusts
    _refused(backend, {"document": document, "signature": forged}, "does not verify")


def test_the_test_signer_is_not_trusted_where_only_aws_signs(backend: Backend) -> None:
    document = SIGNER.document(region="us-east-1", availabilityZone="us-east-1a")
    _refused(backend, SIGNER.prove(document), "us-east-1 certificate")


def test_a_region_without_a_certificate_is_refused(backend: Backend) -> None:
    document = SIGNER.document(region="xx-nowhere-9", availabilityZone="xx-nowhere-9a")
    _refused(backend, SIGNER.prove(document), "no certificate is known")


def test_another_account_is_refused(backend: Backend) -> None:
    document = SIGNER.document(accountId="999988887777")
    _refused(backend, SIGNER.prove(document), "not an accepted account")


@pytest.mark.parametrize(
    ("pending_ago_s", "match"),
    [(3600 + 60, "ago; at most 3600 s"), (-3600, "in the future")],
)
def test_a_document_launched_too_long_ago_or_in_the_future_is_refused(
    backend: Backend, pending_ago_s: float, match: str
) -> None:
    document = SIGNER.document(pending_time=time.time() - pending_ago_s)
    _refused(backend, SIGNER.prove(document), match)


def test_the_maximum_age_is_a_setting(plugin_manager: JitrPluginManager, certificates: Path) -> None:
    backend = _backend(plugin_manager, identity_certificates=str(certificates), identity_max_age_s=60)
    document = SIGNER.document()  # launched 120 s ago
    _refused(backend, SIGNER.prove(document), "at most 60 s")


@pytest.mark.parametrize(
    "change",
    [
        {"instanceId": "not-an-instance"},
        {"instanceId": None},
        {"accountId": 111122223333},
        {"region": "EU WEST"},
        {"pendingTime": "yesterday"},
        {"pendingTime": "2026-01-01T00:00:00"},
        {"availabilityZone": ""},
    ],
    ids=lambda change: repr(change)[:40],
)
def test_a_signed_document_with_malformed_fields_is_refused(backend: Backend, change: dict[str, Any]) -> None:
    document = SIGNER.document(**change)
    _refused(backend, SIGNER.prove(document))


@pytest.mark.parametrize(
    "proof",
    [
        {},
        {"document": SIGNER.document()},
        {"signature": "AAAA"},
        {"document": "{not json", "signature": "AAAA"},
        {"document": "[1, 2]", "signature": "AAAA"},
        {"document": "[" * 5000, "signature": "AAAA"},  # nested past the parser's depth
        {"document": SIGNER.document(), "signature": "%%% not base64 %%%"},
        {"document": SIGNER.document(), "signature": ""},
        {"document": SIGNER.document(), "signature": 7},
        {"document": SIGNER.document() + " " * 10_000, "signature": "AAAA"},
        {"document": SIGNER.document(), "signature": "A" * 100_000},
        ["document", "signature"],
    ],
    ids=lambda proof: repr(proof)[:30],
)
def test_malformed_and_oversized_proofs_are_refused(backend: Backend, proof: Any) -> None:
    _refused(backend, proof)


def test_the_default_account_is_the_one_jitr_runs_in(
    plugin_manager: JitrPluginManager, moto_endpoint: str, certificates: Path
) -> None:
    backend = _backend(
        plugin_manager, identity_certificates=str(certificates), identity_accounts=[], endpoint_url=moto_endpoint
    )
    own = SIGNER.document(accountId="123456789012")  # moto's account
    assert backend.verify_vm_identity("aws", SIGNER.prove(own), AUDIENCE)
    other = SIGNER.document()
    _refused(backend, SIGNER.prove(other), "not an accepted account")


def test_bad_identity_settings_are_settings_errors(plugin_manager: JitrPluginManager, tmp_path: Path) -> None:
    proof = SIGNER.prove(SIGNER.document())
    with pytest.raises(SettingsError, match="12 digits"):
        _backend(plugin_manager, identity_accounts="1234").verify_vm_identity("aws", proof, AUDIENCE)
    with pytest.raises(SettingsError, match="not a directory"):
        missing = str(tmp_path / "missing")
        _backend(plugin_manager, identity_certificates=missing).verify_vm_identity("aws", proof, AUDIENCE)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "us-east-1.pem").write_text("not a certificate")
    with pytest.raises(SettingsError, match="no readable PEM"):
        bad = str(tmp_path / "bad")
        _backend(plugin_manager, identity_certificates=bad).verify_vm_identity("aws", proof, AUDIENCE)
