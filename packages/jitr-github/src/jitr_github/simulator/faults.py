"""What the simulator breaks on purpose, how often, and reproducibly.

Every probabilistic fault draws from its own stream seeded by ``(seed, kind)``, so the same
sequence of calls meets the same faults on every run, and turning one fault on does not shift
the draws of another.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault settings; probabilities are in [0, 1], durations in seconds.

    - ``drop_webhook``: a delivery is lost (recorded as failed, never reaches the receiver).
    - ``duplicate_webhook``: a delivery is sent twice with the same ``X-GitHub-Delivery``.
    - ``delay_webhook_s``: every delivery waits this long before it is sent (order kept).
    - ``reorder``: a delivery is held back ``reorder_hold_s`` so later events overtake it.
    - ``http_5xx``: a REST call answers 502/503/504.
    - ``http_429``: a REST call answers 429 with ``Retry-After: retry_after_s`` (secondary limit).
    - ``jit_409``: generate-jitconfig finds a stale offline runner already holding the name.
    - ``latency_s``: every REST call waits this long before it is answered.
    - ``rate_limit``: requests per rate-limit window and principal (installation or App).
    """

    seed: int = 0
    drop_webhook: float = 0.0
    duplicate_webhook: float = 0.0
    delay_webhook_s: float = 0.0
    reorder: float = 0.0
    reorder_hold_s: float = 0.5
    http_5xx: float = 0.0
    http_429: float = 0.0
    retry_after_s: int = 1
    jit_409: float = 0.0
    latency_s: float = 0.0
    rate_limit: int = 5000
    rate_limit_window_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be a probability in [0, 1], got {value!r}")
        for name in ("delay_webhook_s", "reorder_hold_s", "latency_s", "retry_after_s", "rate_limit_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Faults.{name} must not be negative, got {getattr(self, name)!r}")
        if self.rate_limit < 1:
            raise ValueError(f"Faults.rate_limit must be at least 1, got {self.rate_limit!r}")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Faults:
        """Build from JSON-like data (the admin HTTP API), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}; known: {sorted(known)}")
        return cls(**data)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


PROBABILITIES = ("drop_webhook", "duplicate_webhook", "reorder", "http_5xx", "http_429", "jit_409")


class FaultDice:
    """Seeded draws for one :class:`Faults`; thread-safe."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._streams: dict[str, random.Random] = {}

    def hit(self, kind: str) -> bool:
        """Whether the fault ``kind`` (a probability field) strikes this time."""
        p: float = getattr(self.faults, kind)
        if p <= 0.0:
            return False
        if p >= 1.0:
            return True
        return self.draw(kind) < p

    def draw(self, kind: str) -> float:
        """The next number in [0, 1) from the stream of ``kind``."""
        with self._lock:
            stream = self._streams.get(kind)
            if stream is None:
                stream = self._streams[kind] = random.Random(f"{self.faults.seed}:{kind}")
            return stream.random()
