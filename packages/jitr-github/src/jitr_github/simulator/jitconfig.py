"""The encoded JIT runner configuration, in the shape ``run.sh --jitconfig`` reads.

The runner base64-decodes the value to a JSON object mapping file names to base64 file
contents and writes ``.runner``, ``.credentials`` and ``.credentials_rsaparams`` into its root
(actions/runner ``Runner.cs``); no ``config.sh`` step follows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

RUNNER_FILE = ".runner"
CREDENTIALS_FILE = ".credentials"
RSA_PARAMS_FILE = ".credentials_rsaparams"
JIT_FILES = (RUNNER_FILE, CREDENTIALS_FILE, RSA_PARAMS_FILE)


def encode_jit_config(files: Mapping[str, Mapping[str, Any]]) -> str:
    """Encode runner files (each a JSON object) the way GitHub's ``encoded_jit_config`` does."""
    encoded = {name: _b64(json.dumps(content, separators=(",", ":")).encode()) for name, content in files.items()}
    return _b64(json.dumps(encoded, separators=(",", ":")).encode())


def decode_jit_config(encoded: str) -> dict[str, dict[str, Any]]:
    """Decode a JIT config into its runner files; ``ValueError`` when it is not one."""
    try:
        outer = json.loads(base64.b64decode(encoded, validate=True))
        if not isinstance(outer, dict):
            raise ValueError("not a JSON object")
        files: dict[str, dict[str, Any]] = {}
        for name, content in outer.items():
            value = json.loads(base64.b64decode(content, validate=True))
            if not isinstance(value, dict):
                raise ValueError(f"{name} is not a JSON object")
            files[name] = value
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"not an encoded JIT config ({type(exc).__name__})") from None
    missing = [name for name in JIT_FILES if name not in files]
    if missing:
        raise ValueError(f"JIT config lacks runner files {missing}")
    return files


def runner_credential(encoded: str) -> str:
    """The OAuth client id in ``.credentials``: what identifies the runner to the service."""
    credentials = decode_jit_config(encoded)[CREDENTIALS_FILE]
    client_id = credentials.get("data", {}).get("clientId") if isinstance(credentials.get("data"), dict) else None
    if not isinstance(client_id, str) or not client_id:
        raise ValueError(".credentials of the JIT config carries no clientId")
    return client_id


def rsa_parameters(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """``.credentials_rsaparams`` content: the runner's RSA key as .NET ``RSAParameters`` fields."""
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return {
        "d": _int_b64(numbers.d),
        "dp": _int_b64(numbers.dmp1),
        "dq": _int_b64(numbers.dmq1),
        "exponent": _int_b64(public.e),
        "inverseQ": _int_b64(numbers.iqmp),
        "modulus": _int_b64(public.n),
        "p": _int_b64(numbers.p),
        "q": _int_b64(numbers.q),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))
