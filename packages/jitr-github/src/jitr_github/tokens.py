"""Installation access tokens, cached per installation and refreshed before they expire.

Tokens live an hour; a cached one is used until ``margin_s`` before its ``expires_at``, so a
burst of jobs costs one token request per installation, not one per job. Many threads asking
for an expired token at once cause one request: a lock per installation holds the others until
the first has minted it. Tokens are opaque: their length and format are never assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from jitr_core.secret import Secret

REFRESH_MARGIN_S = 300.0


@dataclass(frozen=True, slots=True)
class InstallationToken:
    value: Secret
    expires_at: float


class TokenCache:
    """Per-installation token cache around a ``mint(installation_id)`` function. Thread-safe."""

    def __init__(
        self,
        mint: Callable[[int], InstallationToken],
        clock: Callable[[], float],
        margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self._mint = mint
        self._clock = clock
        self._margin_s = margin_s
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def get(self, installation_id: int) -> Secret:
        token = self._tokens.get(installation_id)
        if token is not None and self._fresh(token):
            return token.value
        with self._lock_for(installation_id):
            token = self._tokens.get(installation_id)
            if token is None or not self._fresh(token):
                token = self._mint(installation_id)
                self._tokens[installation_id] = token
            return token.value

    def invalidate(self, installation_id: int, value: Secret) -> None:
        """Forget ``value`` (GitHub refused it); a newer token minted meanwhile is kept."""
        with self._lock_for(installation_id):
            token = self._tokens.get(installation_id)
            if token is not None and token.value == value:
                del self._tokens[installation_id]

    def _fresh(self, token: InstallationToken) -> bool:
        return token.expires_at - self._clock() > self._margin_s

    def _lock_for(self, installation_id: int) -> threading.Lock:
        with self._locks_lock:
            lock = self._locks.get(installation_id)
            if lock is None:
                lock = self._locks[installation_id] = threading.Lock()
            return lock
