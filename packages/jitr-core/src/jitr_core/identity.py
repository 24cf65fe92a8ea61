"""Checks every VM identity verifier shares: reading a proof's fields and bounding its age.

A proof arrives from the network, so each field is checked for presence, type and size before
any parsing or cryptography, and every refusal is an :class:`~jitr_core.errors.IdentityError`
whose message names the field, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import IdentityError

# Clocks of a VM's cloud and of the control plane may disagree by this much.
CLOCK_SKEW_S = 300.0


def proof_field(proof: Mapping[str, str], key: str, max_chars: int, what: str) -> str:
    """The text of ``proof[key]``; IdentityError when missing, not text, empty or over ``max_chars``."""
    if not isinstance(proof, Mapping):
        raise IdentityError(f"the {what} proof is not a mapping of fields")
    value = proof.get(key)
    if not isinstance(value, str) or not value:
        raise IdentityError(f"the {what} proof has no {key!r} text")
    if len(value) > max_chars:
        raise IdentityError(f"the {what} proof's {key!r} is {len(value)} characters; at most {max_chars} are accepted")
    return value


def check_age(issued_at: float, max_age_s: float, now: float, what: str) -> None:
    """Refuse a proof issued more than ``max_age_s`` ago, or later than now (beyond clock skew)."""
    if issued_at > now + CLOCK_SKEW_S:
        raise IdentityError(f"the {what} was issued {issued_at - now:.0f} s in the future")
    if now - issued_at > max_age_s:
        age = now - issued_at
        raise IdentityError(f"the {what} was issued {age:.0f} s ago; at most {max_age_s:.0f} s are accepted")
