"""Request shapes from botocore's own service models (``sagemaker``; ``logs`` for serve's CloudWatch
Logs subset): required members, types, length/value bounds, patterns, enums and unknown members, for
any operation's input.

botocore itself checks only required/type/min client-side; the service enforces the rest, so the
runner does it here. Paths are AWS camelCase (``transformInput.splitType``, ``tags.1.key``).
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import botocore.session
from botocore.model import OperationNotFoundError, Shape

from runner.errors import Problem


def camel_path(*parts: str | int) -> str:
    """AWS field path: member names with a lower-case first letter, list indexes as given (1-based)."""
    return ".".join(p[:1].lower() + p[1:] if isinstance(p, str) else str(p) for p in parts)


@functools.cache
def _service_model(service: str = "sagemaker") -> Any:
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _input_shape(operation: str, service: str = "sagemaker") -> Shape:
    try:
        return _service_model(service).operation_model(operation).input_shape
    except OperationNotFoundError as e:
        raise ValueError(f"{service} has no operation {operation!r}") from e


@functools.cache
def output_max_length(operation: str, member: str) -> int:
    """The ``max`` botocore's model sets on a member of an operation's answer (DescribeTransformJob's
    FailureReason: 1024)."""
    shape = _service_model().operation_model(operation).output_shape.members[member]
    return int(shape.metadata["max"])


def validate_request(operation: str, request: Mapping[str, Any], service: str = "sagemaker") -> list[Problem]:
    """Every shape problem of a ``service`` operation's input (botocore model rules, all maxima included)."""
    problems: list[Problem] = []
    _check(_input_shape(operation, service), request, "", problems)
    return problems


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


_TYPES: Mapping[str, tuple[type, ...]] = {
    "structure": (Mapping,),
    "map": (Mapping,),
    "list": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (datetime, str, int, float),
    "blob": (bytes, bytearray, str),
}


def _type_ok(kind: str, value: object) -> bool:
    # bool is an int subclass: True must not pass for an integer (botocore refuses it too).
    return isinstance(value, _TYPES.get(kind, object)) and not (isinstance(value, bool) and kind != "boolean")


def _check(shape: Shape, value: Any, path: str, problems: list[Problem]) -> None:
    kind = shape.type_name
    if not _type_ok(kind, value):
        problems.append(Problem(path, value, f"Member must be of type {kind}; got {type(value).__name__}"))
        return
    meta = shape.metadata
    if kind == "structure":
        for key in value:
            if key not in shape.members:
                known = ", ".join(shape.members)
                problems.append(
                    Problem(
                        _join(path, camel_path(str(key))),
                        value[key],
                        f'Unknown member "{key}" in {shape.name}; must be one of: {known}',
                    )
                )
        for name, member in shape.members.items():
            sub = _join(path, camel_path(name))
            if value.get(name) is not None:
                _check(member, value[name], sub, problems)
            elif name in shape.required_members:
                problems.append(Problem(sub, None, "Member must not be null"))
    elif kind == "list":
        _check_bounds(value, len(value), "length", meta, path, problems)
        for i, item in enumerate(value, start=1):
            _check(shape.member, item, _join(path, str(i)), problems)
    elif kind == "map":
        _check_bounds(value, len(value), "length", meta, path, problems)
        for key, item in value.items():
            sub, key_problems = _join(path, str(key)), list[Problem]()
            _check(shape.key, key, sub, key_problems)
            for p in key_problems:  # AWS reports map keys this way
                problems.append(
                    Problem(p.path, p.value, f"Map keys must satisfy constraint: [{p.constraint}]")
                )
            _check(shape.value, item, sub, problems)
    elif kind == "string":
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(Problem(path, value, f"Member must satisfy enum value set: [{', '.join(enum)}]"))
        _check_bounds(value, len(value), "length", meta, path, problems)
        pattern = meta.get("pattern")
        compiled = _compile(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            problems.append(
                Problem(path, value, f"Member must satisfy regular expression pattern: {pattern}")
            )
    elif kind in ("integer", "long", "float", "double"):
        _check_bounds(value, value, "value", meta, path, problems)


def _check_bounds(
    value: Any, size: Any, what: str, meta: Mapping[str, Any], path: str, out: list[Problem]
) -> None:
    if "min" in meta and size < meta["min"]:
        out.append(Problem(path, value, f"Member must have {what} greater than or equal to {meta['min']}"))
    if "max" in meta and size > meta["max"]:
        out.append(Problem(path, value, f"Member must have {what} less than or equal to {meta['max']}"))


# The model's patterns are Java regexes; translate the few constructs Python's re lacks.
_POSIX = {"Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "Upper": "A-Z", "Lower": "a-z"}
_SURROGATES = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


@functools.cache
def _category_ranges() -> Mapping[str, str]:
    """Character-class bodies for each Unicode category, major (``L``, ``C``) and minor (``Lu``,
    ``Cc``: newer botocore models use ``[^\\s\\p{Cc}\\p{Cf}]``), in one pass."""
    ranges: dict[str, list[str]] = {}
    starts: dict[int, int] = {1: 0, 2: 0}
    current = {1: "C", 2: "Cc"}
    for cp in range(1, sys.maxunicode + 2):
        category = unicodedata.category(chr(cp)) if cp <= sys.maxunicode else ""
        for n in (1, 2):
            now = category[:n]
            if now != current[n]:
                ranges.setdefault(current[n], []).append(f"\\U{starts[n]:08x}-\\U{cp - 1:08x}")
                starts[n], current[n] = cp, now
    return {k: "".join(v) for k, v in ranges.items()}


def _surrogate_pair(m: re.Match[str]) -> str:
    hi, lo = int(m.group(1), 16), int(m.group(2), 16)
    return f"\\U{0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00):08x}"


@functools.cache
def _compile(java: str) -> re.Pattern[str] | None:
    """Java pattern -> Python (ASCII \\w \\d \\s as in Java); None when it cannot be translated."""
    text = _SURROGATES.sub(_surrogate_pair, java)
    text = re.sub(r"(?<!\\)\$\{\d+(,\d*)?\}", "$", text)  # Java lets "$" carry a quantifier
    out, in_class, i = [], False, 0
    while i < len(text):
        m = re.match(r"\\p\{(\w+)\}", text[i:])
        if m:
            name = m.group(1)
            body = _POSIX.get(name) or _category_ranges().get(name)
            if body is None:
                return None
            out.append(body if in_class else f"[{body}]")
            i += m.end()
            continue
        ch = text[i]
        if ch == "\\":
            out.append(text[i : i + 2])
            i += 2
            continue
        in_class = (in_class or ch == "[") and ch != "]"
        out.append(ch)
        i += 1
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None
