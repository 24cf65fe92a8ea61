"""How the simulated GitHub tells who is calling: App JWTs, installation tokens, rate limits.

JWTs are verified with the App's public key and checked against the simulator's clock the way
GitHub checks them (signature, ``iss``, ``exp`` in the future but at most ten minutes away).
Installation tokens are random, belong to one installation, expire after an hour and come in
both the classic 40-character and the newer, longer ``ghs_APPID_...`` format.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_TTL_S = 3600.0
JWT_MAX_LIFETIME_S = 600
_ALPHANUM = string.ascii_letters + string.digits


class AuthFailure(Exception):
    """The credentials were refused; the message is GitHub's."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One principal's rate-limit window, in ``x-ratelimit-*`` terms."""

    limit: int
    remaining: int
    reset: int
    used: int


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


class AppIdentity:
    """The App: its id, client id and RSA key pair; verifies the JWTs the App signs."""

    def __init__(self, app_id: int, client_id: str, key: rsa.RSAPrivateKey) -> None:
        self.app_id = app_id
        self.client_id = client_id
        self.private_key_pem = private_key_pem(key)
        self._public_key = key.public_key()

    def verify_jwt(self, token: str, now: float) -> None:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_iss": False},
            )
        except jwt.PyJWTError:
            raise AuthFailure("A JSON web token could not be decoded") from None
        exp, iat, iss = claims.get("exp"), claims.get("iat"), claims.get("iss")
        if not isinstance(iat, int | float) or iat > now + 60:
            raise AuthFailure(
                "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued."
            )
        if not isinstance(exp, int | float) or exp <= now:
            raise AuthFailure(
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
                "the assertion expires."
            )
        if exp > now + JWT_MAX_LIFETIME_S + 60:
            raise AuthFailure("'Expiration time' claim ('exp') is too far in the future.")
        if str(iss) not in (str(self.app_id), self.client_id):
            raise AuthFailure("'Issuer' claim ('iss') must be the App's ID or client ID.")


class AppIdentities:
    """Every App the simulator knows (its own, and those created from manifests), by id and client id.

    A JWT is verified with the key of the App its ``iss`` names; a token naming no known App is
    checked against the simulator's own App, so it is refused with GitHub's usual messages.
    """

    def __init__(self, primary: AppIdentity) -> None:
        self.primary = primary
        self._lock = threading.Lock()
        self._by_issuer: dict[str, AppIdentity] = {}
        self.add(primary)

    def add(self, identity: AppIdentity) -> None:
        with self._lock:
            self._by_issuer[str(identity.app_id)] = identity
            self._by_issuer[identity.client_id] = identity

    def verify_jwt(self, token: str, now: float) -> AppIdentity:
        """The App that signed ``token``; raises :class:`AuthFailure` as GitHub refuses it."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("A JSON web token could not be decoded") from None
        with self._lock:
            identity = self._by_issuer.get(str(claims.get("iss")), self.primary)
        identity.verify_jwt(token, now)
        return identity


class TokenStore:
    """Installation access tokens: issued per installation, valid for an hour."""

    def __init__(self, app_id: int, ttl_s: float = TOKEN_TTL_S) -> None:
        self._app_id = app_id
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[int, float]] = {}
        self._revoked: list[str] = []
        self._issued = 0

    def issue(self, installation_id: int, now: float, app_id: int | None = None) -> tuple[str, float]:
        """A new token of an installation, for the simulator's App or the App ``app_id``."""
        with self._lock:
            self._issued += 1
            if self._issued % 2:
                token = "ghs_" + "".join(secrets.choice(_ALPHANUM) for _ in range(36))
            else:
                token = f"ghs_{app_id or self._app_id}_{secrets.token_urlsafe(96)}"
            expires_at = float(int(now + self._ttl_s))
            self._tokens[token] = (installation_id, expires_at)
            return token, expires_at

    def installation_of(self, token: str, now: float) -> int:
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found[1] <= now:
            raise AuthFailure("Bad credentials")
        return found[0]

    def revoke(self, installation_id: int) -> None:
        """Forget every token of an installation (GitHub revokes them when the App is uninstalled)."""
        with self._lock:
            for token in [t for t, (owner, _) in self._tokens.items() if owner == installation_id]:
                self._revoked.append(token)
                del self._tokens[token]

    def issued(self) -> list[str]:
        """Every token handed out (for tests proving none leaks into logs)."""
        with self._lock:
            return [*self._tokens, *self._revoked]


class RateLimiter:
    """A fixed window of ``limit`` requests per principal, as GitHub's primary rate limit."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def peek(self, principal: str, limit: int, window_s: float) -> Bucket:
        with self._lock:
            return self._bucket(principal, limit, window_s, 0)

    def take(self, principal: str, limit: int, window_s: float) -> Bucket:
        """Count one request; the bucket after it (``remaining`` never below 0)."""
        with self._lock:
            return self._bucket(principal, limit, window_s, 1)

    def _bucket(self, principal: str, limit: int, window_s: float, cost: int) -> Bucket:
        now = self._clock()
        start, used = self._windows.get(principal, (now, 0))
        if now >= start + window_s:
            start, used = now, 0
        used = min(limit, used + cost)
        self._windows[principal] = (start, used)
        return Bucket(limit, limit - used, int(start + window_s) + 1, used)
