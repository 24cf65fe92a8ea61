"""JSON text of flat objects, written as the json module writes it, for the per-delivery hot path.

A queue message and a log line are flat: string keys, and values that are strings, integers,
booleans, None, floats or sequences of strings. The json module spends most of its time on such
an object in general code: escaping the same keys again, dispatching on each value's type.
:func:`writer` makes, once per (keys, value types), a function writing the same text: an
f-string of the escaped keys (and each ``null``, and the values fixed ahead) between the other
values, each converted by the one expression its type needs. Other values (a str or int
subclass, a mapping, a list of numbers) get no writer, and the caller uses the json module, so
the text never differs from what ``json.dumps(obj, separators=(",", ":"))`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii as quote
from typing import Any

__all__ = ["Writer", "quote", "writer"]

Writer = Callable[[Iterable[Any]], str]  # the values, in key order (those not fixed) → the object's text

# Each type's conversion of a value named {v}, in an f-string (so without double quotes). An
# exact int or str is formatted by an f-string as str() and json write them. json writes a float
# as repr() does, except the non-finite ones (x - x is NaN only for them), in JavaScript's
# spelling; a sequence of str as an array (quote raises TypeError for an item that is not a str).
_CONVERSIONS: dict[type, str] = {
    int: "{v}",
    str: "quote({v})",
    bool: "BOOLEANS[{v}]",
    float: "(repr({v}) if {v} - {v} == 0.0 else NON_FINITE[repr({v})])",
    tuple: "'[' + ','.join(map(quote, {v})) + ']'",
    list: "'[' + ','.join(map(quote, {v})) + ']'",
}
_NAMESPACE = {
    "quote": quote,
    "BOOLEANS": ("false", "true"),
    "NON_FINITE": {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"},
}
_TEXT = json.JSONEncoder(separators=(",", ":"))  # a fixed value's text


def writer(
    keys: tuple[str, ...], types: tuple[type | None, ...], fixed: Mapping[int, Any] | None = None
) -> Writer | None:
    """The writer of objects with these distinct keys and value types, or None when a type is not one
    above. ``fixed`` maps positions to values written into the text now (their ``types`` are not
    read); the writer takes the other values, in order. It raises TypeError for a sequence holding
    something other than str.

    Its source is an f-string of the values v0, v1, ... between T0, T1, ..., which hold the rest
    (escaped keys, separators, ``null`` and the fixed values): keys and values, which are data, are
    not source."""
    fixed = fixed or {}
    if len(keys) != len(types) or len(set(keys)) != len(keys) or not all(type(key) is str for key in keys):
        return None
    texts = ["{"]
    expressions: list[str] = []
    names: list[str] = []
    for index, (key, kind) in enumerate(zip(keys, types, strict=True)):
        texts[-1] += ("," if index else "") + quote(key) + ":"
        if index in fixed:
            try:
                texts[-1] += _TEXT.encode(fixed[index])
            except (TypeError, ValueError):
                return None
            continue
        names.append(f"v{index}")
        if kind is type(None):
            texts[-1] += "null"
            continue
        conversion = _CONVERSIONS.get(kind) if kind is not None else None
        if conversion is None:
            return None
        expressions.append(conversion.format(v=f"v{index}"))
        texts.append("")
    texts[-1] += "}"
    pieces = "".join(f"{{T{index}}}{{{expression}}}" for index, expression in enumerate(expressions))
    unpack = f"    ({''.join(name + ', ' for name in names)}) = values\n" if names else ""
    source = f'def write(values):\n{unpack}    return f"{pieces}{{T{len(expressions)}}}"\n'
    namespace: dict[str, Any] = {**_NAMESPACE, **{f"T{index}": text for index, text in enumerate(texts)}}
    exec(source, namespace)  # noqa: S102 - source made above of fixed expressions and names; keys and values are data
    write: Writer = namespace["write"]
    return write
