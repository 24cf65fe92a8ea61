"""Structured JSON logs: one line per event, with delivery id, job id and runner name.

``log_context`` binds fields for everything logged inside it (context variables, so threads and
async tasks keep their own). ``redact`` is the safety net behind invariant 5: values registered
as secret are replaced in every line, even if a bug tries to log one.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "jitr_log_context", default=MappingProxyType({})
)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_CHATTY = ("botocore", "boto3", "urllib3", "google", "requests")
_SECRETS: deque[str] = deque(maxlen=512)
_SECRETS_LOCK = threading.Lock()


def register_secret(value: str) -> None:
    """Redact ``value`` from every later log line (values shorter than 8 characters are ignored)."""
    if len(value) >= 8:
        with _SECRETS_LOCK:
            if value not in _SECRETS:
                _SECRETS.append(value)


def redact(text: str) -> str:
    for value in tuple(_SECRETS):
        if value in text:
            text = text.replace(value, "[REDACTED]")
    return text


def _redact_values(value: Any) -> Any:
    """``value`` with every registered secret masked, before JSON escaping could hide one."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {_redact_values(str(k)): _redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_values(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (delivery_id, job_id, runner_name, ...) to every log line inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "severity": record.levelname,  # the field Cloud Logging reads
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_CONTEXT.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(_redact_values(entry), separators=(",", ":")))


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send the ``jitr`` loggers' records to ``stream`` (stderr) as JSON lines; idempotent."""
    logger = logging.getLogger("jitr")
    logger.setLevel(level)
    for chatty in _CHATTY:  # SDK debug logs print request bodies (user data, secrets)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "_jitr", False):
            handler.setLevel(level)
            if stream is not None:
                handler.setStream(stream)
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._jitr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
