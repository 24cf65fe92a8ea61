"""Verify an EC2 instance's identity: its instance identity document and AWS's signature of it.

The proof is ``{"document": <the text of /latest/dynamic/instance-identity/document>,
"signature": <the text of /latest/dynamic/instance-identity/signature>}``: the base64 RSA
PKCS#1 v1.5 signature of the document's exact bytes under SHA-256, made by the key of the
document's region. It is checked with AWS's published "RSA" certificate for that region, shipped
in ``jitr_aws/certificates/<region>.pem`` (see the README there for the source), plus any
``<region>.pem`` in ``[aws] identity_certificates`` (a newly opened region, a rotated key).

Only after the signature holds are the document's fields trusted: the account must be one of
``[aws] identity_accounts`` (default: the account jitr runs in, from STS) and ``pendingTime``
(when the instance was launched) at most ``[aws] identity_max_age_s`` ago. The document is the
same for the instance's whole life and readable by any process on it, so it cannot stop replay:
the broker does, answering each VM once through its own record write.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jitr_core.errors import IdentityError, SettingsError
from jitr_core.identity import check_age, proof_field
from jitr_core.model import VMIdentity

from .config import PROVIDER, AwsConfig

# A real document is about 500 bytes and its signature 172 characters (a 1024-bit key).
MAX_DOCUMENT_CHARS = 8192
MAX_SIGNATURE_CHARS = 2048

_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d{1,2}$")
_ZONE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d{1,2}[a-z0-9-]*$")
_INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
_ACCOUNT = re.compile(r"^\d{12}$")

Keys = Mapping[str, tuple[rsa.RSAPublicKey, ...]]

_own_account: dict[tuple[str, str | None], str] = {}
_lock = threading.Lock()


def verify_identity_document(
    proof: Mapping[str, str], keys: Keys, accounts: frozenset[str], max_age_s: float, now: float
) -> VMIdentity:
    """The identity ``proof`` proves, trusting ``keys`` per region; IdentityError otherwise."""
    text = proof_field(proof, "document", MAX_DOCUMENT_CHARS, "AWS")
    signature = _signature(proof_field(proof, "signature", MAX_SIGNATURE_CHARS, "AWS"))
    document = _document(text)
    region = _text(document, "region", _REGION)
    # A shell's $(...) drops the document's trailing newline, if it has one: the signed bytes
    # are tried with and without it (the fields read are the same either way).
    signed = (text.encode(), text.encode() + b"\n")
    if not any(_verifies(key, signature, data) for key in keys.get(region, ()) for data in signed):
        if region not in keys:
            raise IdentityError(f"no certificate is known for region {region} (see [aws] identity_certificates)")
        raise IdentityError(f"the identity document's signature does not verify with the {region} certificate")
    account = _text(document, "accountId", _ACCOUNT)
    if account not in accounts:
        raise IdentityError(f"the identity document is from account {account}, which is not an accepted account")
    launched = _timestamp(_text(document, "pendingTime", None))
    check_age(launched, max_age_s, now, "identity document (its pendingTime)")
    return VMIdentity(
        PROVIDER,
        vm_id=_text(document, "instanceId", _INSTANCE),
        zone=_text(document, "availabilityZone", _ZONE),
        account=account,
        issued_at=launched,
    )


def verify(proof: Mapping[str, str], config: AwsConfig) -> VMIdentity:
    """Verify ``proof`` under the ``[aws] identity_*`` settings of ``config``."""
    keys = merged_keys(config.identity_certificates)
    accounts = frozenset(config.identity_accounts) or frozenset([own_account(config)])
    return verify_identity_document(proof, keys, accounts, config.identity_max_age_s, time.time())


def merged_keys(directory: str | None) -> Keys:
    """The shipped keys per region, with those of ``directory``'s ``<region>.pem`` files added."""
    shipped = shipped_keys()
    if directory is None:
        return shipped
    extra = _directory_keys(directory)
    return {region: shipped.get(region, ()) + extra.get(region, ()) for region in {*shipped, *extra}}


@functools.cache
def shipped_keys() -> Keys:
    """The public keys of the certificates shipped in ``jitr_aws/certificates``, by region."""
    folder = resources.files("jitr_aws").joinpath("certificates")
    return {
        entry.name.removesuffix(".pem"): _keys(entry.read_bytes(), entry.name)
        for entry in folder.iterdir()
        if entry.name.endswith(".pem")
    }


@functools.cache
def _directory_keys(directory: str) -> Keys:
    folder = Path(directory)
    if not folder.is_dir():
        raise SettingsError(f"[aws] identity_certificates is {directory!r}, which is not a directory")
    found: dict[str, tuple[rsa.RSAPublicKey, ...]] = {}
    for path in sorted(folder.glob("*.pem")):
        if not _REGION.match(path.stem):
            raise SettingsError(f"{path} is not named for a region (expected <region>.pem, as us-east-1.pem)")
        found[path.stem] = _keys(path.read_bytes(), str(path))
    return found


def _keys(pem: bytes, source: str) -> tuple[rsa.RSAPublicKey, ...]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SettingsError(f"{source} holds no readable PEM certificate: {exc}") from None
    keys = tuple(c.public_key() for c in certificates)
    rsa_keys = tuple(key for key in keys if isinstance(key, rsa.RSAPublicKey))
    if len(rsa_keys) != len(keys):
        raise SettingsError(f"{source} holds a non-RSA certificate; the identity signature needs AWS's RSA one")
    return rsa_keys


def own_account(config: AwsConfig) -> str:
    """The account jitr's credentials belong to (STS GetCallerIdentity), asked once per process."""
    from .clients import client

    key = (config.region, config.endpoint_url)
    with _lock:
        found = _own_account.get(key)
        if found is None:
            found = _own_account[key] = str(client("sts", config).get_caller_identity()["Account"])
    return found


def _verifies(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _signature(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError("the identity document's signature is not base64") from None


def _document(text: str) -> Mapping[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise IdentityError("the identity document is not JSON") from None
    if not isinstance(document, dict):
        raise IdentityError("the identity document is not a JSON object")
    return document


def _text(document: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value or len(value) > 64 or (pattern and not pattern.match(value)):
        raise IdentityError(f"the identity document's {key} is missing or malformed")
    return value


def _timestamp(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise IdentityError("the identity document's pendingTime is not a timestamp") from None
    if moment.tzinfo is None:
        raise IdentityError("the identity document's pendingTime has no time zone")
    return moment.timestamp()
