"""Authenticating as the GitHub App: RS256 JWTs signed with the App's private key.

GitHub accepts a JWT whose ``exp`` is at most ten minutes ahead; ``iat`` is backdated a minute
so that a clock running slightly ahead of GitHub's does not make it "issued in the future".
A JWT is reused until a minute before it expires (signing costs an RSA operation).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jitr_core.errors import GitHubAuthError
from jitr_core.secret import Secret

CLOCK_SKEW_S = 60
JWT_LIFETIME_S = 600  # GitHub's maximum, counted from the backdated iat
REUSE_MARGIN_S = 60


class AppCredentials:
    """The App id (or client id) and private key; mints App JWTs. Thread-safe."""

    def __init__(self, app_id: str, private_key: Secret | str, clock: Callable[[], float]) -> None:
        if not str(app_id).strip():
            raise GitHubAuthError("the GitHub App id (or client id) is empty")
        pem = private_key.reveal() if isinstance(private_key, Secret) else private_key
        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise GitHubAuthError("the GitHub App private key is not a PEM-encoded, unencrypted private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise GitHubAuthError("the GitHub App private key is not an RSA key (GitHub Apps sign with RS256)")
        self.app_id = str(app_id).strip()
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._jwt: Secret | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"AppCredentials(app_id={self.app_id!r})"

    def jwt(self) -> Secret:
        """A valid App JWT, reused while it has more than a minute left."""
        now = self._clock()
        with self._lock:
            if self._jwt is None or self._expires - now <= REUSE_MARGIN_S:
                issued = int(now) - CLOCK_SKEW_S
                expires = issued + JWT_LIFETIME_S
                token = jwt.encode({"iat": issued, "exp": expires, "iss": self.app_id}, self._key, algorithm="RS256")
                self._jwt, self._expires = Secret(token), float(expires)
            return self._jwt
