"""A lease in the store, so overlapping runs of a periodic function do not both act."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .records import LEASE, Store


@contextlib.contextmanager
def lease(store: Store, name: str, ttl_s: float) -> Iterator[bool]:
    """Yield True when this run holds the lease, False when another run does; release at the end.

    The lease expires by itself after ``ttl_s``, so a crashed holder blocks later runs only
    until then.
    """
    record = store.create(LEASE, name, "held", expires_at=store.clock() + ttl_s)
    if record is None:
        yield False
        return
    try:
        yield True
    finally:
        store.backend.delete(LEASE, name, expected_version=record.version)
