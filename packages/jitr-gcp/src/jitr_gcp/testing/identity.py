"""A key that signs identity tokens as Google does, for tests of the broker's GCP verifier.

Its self-signed certificate is what a stand-in for Google's ``oauth2/v1/certs`` serves under the
key's id, so google-auth verifies the tokens for real. Needs ``cryptography`` (a test dependency).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt


class GoogleKey:
    """An RSA key under ``kid``: ``certificate`` (PEM, valid a day either side of now) and ``sign``."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.signer = crypt.RSASigner.from_string(pem, key_id=kid)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
        now = datetime.datetime.now(datetime.UTC)
        built = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate = built.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: Mapping[str, Any]) -> str:
        """An RS256 JWT of ``claims`` with this key's id in its header."""
        return jwt.encode(self.signer, dict(claims)).decode()
