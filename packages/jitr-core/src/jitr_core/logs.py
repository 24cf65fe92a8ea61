"""Structured JSON logs: one line per event, with delivery id, job id and runner name.

``log_context`` binds fields for everything logged inside it (context variables, so threads and
async tasks keep their own). ``redact`` is the safety net behind invariant 5: values registered
as secret are replaced in every line, even if a bug tries to log one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from itertools import repeat
from operator import is_not
from types import MappingProxyType
from typing import Any

from . import jsontext

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "jitr_log_context", default=MappingProxyType({})
)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_CHATTY = ("botocore", "boto3", "urllib3", "google", "requests")
_NONE = repeat(None)  # endless: compared with a context's values, by identity
_SECRETS: deque[str] = deque(maxlen=512)
_SECRETS_LOCK = threading.Lock()


def register_secret(value: str) -> None:
    """Redact ``value`` from every later log line (values shorter than 8 characters are ignored).

    JSON escapes some characters (quotes, backslashes, control and non-ASCII characters) and its
    escaping maps each character on its own, so a secret inside any string of a log line appears
    in the line as the secret's escaped form: that form is redacted too.
    """
    if len(value) >= 8:
        forms = dict.fromkeys((value, _ESCAPE.encode(value)[1:-1]))
        with _SECRETS_LOCK:
            for form in forms:
                if form not in _SECRETS:
                    _SECRETS.append(form)


def redact(text: str) -> str:
    for value in tuple(_SECRETS):
        if value in text:
            text = text.replace(value, "[REDACTED]")
    return text


def _redact_values(value: Any) -> Any:
    """``value`` with every registered secret masked, and made of JSON types (the slow path, for
    values JSON cannot take as they are, such as a mapping with tuple keys)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {_redact_values(str(k)): _redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_values(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


def _plain(value: Any) -> Any:
    """What JSON cannot encode, as :func:`_redact_values` turns it into JSON types."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


_ESCAPE = json.JSONEncoder()  # the default escaping (ASCII), which _LINE uses too
_LINE = json.JSONEncoder(separators=(",", ":"), default=_plain)
_HEAD = ("time", "level", "severity", "logger", "message")  # a line's first fields, in order
_HEAD_KEYS = frozenset(_HEAD)
MAX_LINE_WRITERS = 256  # kinds of lines (logger, level, message, fields and their types) given a writer
_LINES: dict[tuple[Any, ...], jsontext.Writer | None] = {}
_LEVEL_NAMES: Mapping[int, str] = logging._levelToName  # what getLevelName reads first (addLevelName's too)
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))  # a time's last characters


class log_context(dict[str, Any]):  # lower-case, as contextlib's context managers
    """``with log_context(delivery_id=..., job_id=...):`` adds the fields (those not None) to every
    log line inside the block (delivery_id, job_id, runner_name, ...).

    It is the dict of the fields itself (made by dict's constructor, with no call into Python: the
    webhook enters two per delivery) and, once entered, the token of the context to go back to."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        outer = _CONTEXT.get()
        if all(map(is_not, self.values(), _NONE)):
            merged = {**outer, **self}
        else:  # a field given as None leaves the outer value
            merged = dict(outer)
            merged.update((key, value) for key, value in self.items() if value is not None)
        self._token = _CONTEXT.set(merged)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        _CONTEXT.reset(self._token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context and extras."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def _time(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        millis = int((created - second) * 1000)
        return cached[1] + _MILLIS[millis] if millis >= 0 else f"{cached[1]}.{millis:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "severity": record.levelname,  # the field Cloud Logging reads
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_CONTEXT.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)

    def line(self, created: float, level: int, logger: str, message: str, fields: Mapping[str, Any]) -> str:
        """What :meth:`format` makes of a record of ``fields`` as extras and no exception: the same
        text, by a writer made once per kind of line (see :func:`_line_writer`) when there is one."""
        levelname = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
        context = _CONTEXT.get()
        merged = {**context, **fields}
        values = merged.values()
        kind = (levelname, logger, message, *merged, *map(type, values))  # keys are str, types are not
        try:
            write = _LINES[kind]
        except KeyError:
            write = _line_writer(kind, len(merged))
        if write is not None:
            try:
                return redact(write((self._time(created), *values)))
            except TypeError:  # a sequence holding something other than str: the json module's
                pass
        entry: dict[str, Any] = {
            "time": self._time(created),
            "level": levelname,
            "severity": levelname,
            "logger": logger,
            "message": message,
        }
        entry.update(context)
        entry.update(fields)
        return _encode(entry)


def _line_writer(kind: tuple[Any, ...], count: int) -> jsontext.Writer | None:
    """The writer of lines of this kind, remembered (up to MAX_LINE_WRITERS kinds): the head's
    fields are written into it, it takes the time and the context's and extras' values. None when
    a context or extra field is named like a head field (it replaces the head's value where it
    stands, as :meth:`JsonFormatter.format` has it) or a value is not flat."""
    levelname, logger, message = kind[:3]
    keys, types = kind[3 : 3 + count], kind[3 + count :]
    write = None
    if _HEAD_KEYS.isdisjoint(keys):
        head = {1: levelname, 2: levelname, 3: logger, 4: message}
        write = jsontext.writer((*_HEAD, *keys), (str, None, None, None, None, *types), head)
    if len(_LINES) < MAX_LINE_WRITERS:
        _LINES[kind] = write
    return write


def _encode(entry: dict[str, Any]) -> str:
    try:
        text = _LINE.encode(entry)
    except (TypeError, ValueError):  # keys JSON cannot take, circular values
        text = json.dumps(_redact_values(entry), separators=(",", ":"))
    return redact(text)


def log_line(logger: logging.Logger, level: int, message: str, /, **fields: Any) -> None:
    """``logger.log(level, message, extra=fields)``, the same line at a third of the cost.

    When the record would reach only the handler :func:`configure_logging` installed (no filter
    on the logger or the handler, no other handler on the way up, the standard logger and record
    classes), the line is formatted and written here without building a
    :class:`logging.LogRecord`; otherwise, as when a test or an operator adds a handler, it is
    logged as usual. The level is honoured either way. What is given up: a record factory or a
    ``Logger`` subclass installed later is not consulted while the fast path applies (it then
    does not apply: both are checked on every call).
    """
    if not logger.isEnabledFor(level):
        return
    handler = _direct_handler(logger, level)
    for key in fields:  # names a record refuses or the formatter leaves out: as the logging module does
        if key in _STANDARD or key[:1] == "_":
            handler = None
    if handler is None:
        logger.log(level, message, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)
    text = formatter.line(time.time(), level, logger.name, message, fields) + handler.terminator
    try:
        with handler.lock:  # type: ignore[union-attr]  # StreamHandler creates its lock
            stream = handler.stream
            stream.write(text)
            if hasattr(stream, "flush"):
                stream.flush()
    except RecursionError:
        raise
    except Exception:  # as StreamHandler.emit does: reported on stderr, never raised to the caller
        handler.handleError(logger.makeRecord(logger.name, level, "(unknown file)", 0, message, (), None))


def _direct_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[Any] | None:
    """jitr's own JSON handler when a record of ``logger`` at ``level`` would reach it and nothing else."""
    if (
        logger.disabled
        or logger.filters
        or type(logger) is not logging.Logger
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (
        type(found) is not logging.StreamHandler
        or not getattr(found, "_jitr", False)
        or found.filters
        or level < found.level
        or type(found.formatter) is not JsonFormatter
    ):
        return None
    return found


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send the ``jitr`` loggers' records to ``stream`` (stderr) as JSON lines; idempotent."""
    logger = logging.getLogger("jitr")
    logger.setLevel(level)
    # A JSON line holds none of what the logging module otherwise looks up for every record (the
    # caller's file and line, thread and process names): skipping the look-ups halves the cost
    # of a line (the logging HOWTO's "Optimization"), which the webhook pays on every delivery.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for chatty in _CHATTY:  # SDK debug logs print request bodies (user data, secrets)
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "_jitr", False):
            handler.setLevel(level)
            if stream is not None:
                if getattr(handler.stream, "closed", False):  # its owner closed it: nothing to flush
                    handler.stream = stream
                else:
                    handler.setStream(stream)
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._jitr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
