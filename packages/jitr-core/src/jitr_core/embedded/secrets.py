"""Secrets for one machine: ``env:VAR`` reads an environment variable, ``file:/path`` a file.

The reader lives in :mod:`jitr_core.secret`, because the backend facade reads such references
for every secrets provider.
"""

from __future__ import annotations

from ..secret import read_local_secret as fetch_secret

__all__ = ["fetch_secret"]
