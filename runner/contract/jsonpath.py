"""The JSONPath subset SageMaker's DataProcessing supports, and the record text it works on.

    $                  the whole record
    .name   ['a','b']  a child, or an object made of the named children (names are not paths: no 'b.c')
    .*   [*]           every child
    [i,j]              elements by index, -1 = last; an index outside the array is an error
    [start:end]        a slice, end exclusive, either end optional; one range per bracket ($[0,5:] is fine)

A text/csv record is a JSON array of its fields (RFC 4180), so CSV paths use indexes only; fields are
copied as written and quoted only where RFC 4180 needs it. JSON records keep their numbers as written
(``1.10`` stays ``1.10``) and their key order, and are written as compact JSON. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CSV = "text/csv"
JSON = "application/json"
JSON_LINES = "application/jsonlines"
# Characters a dot-notation name may hold (the request pattern allows letters, digits and these).
NAME_EXTRA = "-"
# Inside ['...'] these would make the name a path of its own, which SageMaker does not evaluate.
NESTING = ".[]*$"


class JsonPathError(ValueError):
    """An expression outside the supported subset. ``full`` is a complete message where SageMaker's own
    text is known; otherwise the reason is placed in the request-validation sentence."""

    def __init__(self, reason: str, full: str = "") -> None:
        self.reason = reason
        self.full = full
        super().__init__(full or reason)


class PathError(ValueError):
    """A valid expression that does not fit a record (index outside the array, missing key, ...)."""


# --- JSON with numbers kept as written -------------------------------------------------------------


class RawNumber(str):
    """A JSON number (or NaN / Infinity) exactly as written in the input."""

    __slots__ = ()


def json_loads(text: str) -> Any:
    """``json.loads`` that keeps every number's text, so re-encoding never changes ``1.10`` or ``1e3``."""
    return json.loads(text, parse_float=RawNumber, parse_int=RawNumber, parse_constant=RawNumber)


def json_dumps(value: Any) -> str:
    """Compact JSON: no spaces, key order kept, numbers as read, non-ASCII text kept as UTF-8."""
    if isinstance(value, RawNumber):
        return str.__str__(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + json_dumps(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_dumps(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# --- CSV rows --------------------------------------------------------------------------------------


def csv_fields(text: str) -> list[str]:
    """One CSV record (no terminator) as its fields, RFC 4180 quotes removed; an empty line has none.

    Hand-written rather than the csv module, which caps a field at 128 KiB by a process-wide setting.
    """
    if not text:
        return []
    if '"' in text:
        return _quoted_fields(text)
    _one_line(text)
    return text.split(",")


def _one_line(unquoted: str) -> None:
    if "\n" in unquoted or "\r" in unquoted:
        raise PathError("not a valid CSV record (a line break outside quotes: one record spans lines)")


def _quoted_fields(text: str) -> list[str]:
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            parts: list[str] = []
            i += 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise PathError("not a valid CSV record (a quoted field is not closed)")
                parts.append(text[i:j])
                if text.startswith('"', j + 1):  # "" inside quotes is one "
                    parts.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            fields.append("".join(parts))
            if i == n:
                return fields
            if text[i] != ",":
                raise PathError(f"not a valid CSV record (',' expected after '\"' at column {i + 1})")
            i += 1
        else:
            j = text.find(",", i)
            field = text[i:] if j < 0 else text[i:j]
            _one_line(field)
            fields.append(field)
            if j < 0:
                return fields
            i = j + 1


def csv_line(fields: Sequence[str]) -> str:
    """Fields joined by ``,``; a field is quoted only if it holds ``,``, ``"``, CR or LF."""
    line = ",".join(fields)
    if line.count(",") == len(fields) - 1 and not any(c in line for c in '"\r\n'):
        return line  # the common case, checked on the whole line at C speed
    return ",".join('"' + f.replace('"', '""') + '"' if any(c in f for c in ',"\r\n') else f for f in fields)


# --- JSONPath --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """``.name`` or ``['a','b',...]``."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Wildcard:
    """``.*`` or ``[*]``."""


@dataclass(frozen=True)
class Indexes:
    """``[i,j,start:end]``: each item an index or a (start, end) range."""

    items: tuple[int | tuple[int | None, int | None], ...]


Step = Child | Wildcard | Indexes


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def is_root(self) -> bool:
        return not self.steps

    @property
    def index_only(self) -> bool:
        """Fits a CSV row: ``$``, or one index / wildcard selector."""
        return len(self.steps) <= 1 and all(not isinstance(s, Child) for s in self.steps)

    @property
    def definite(self) -> bool:
        """True when the path names one value (Jayway's rule); otherwise the result is a list."""
        for i, step in enumerate(self.steps):
            if isinstance(step, Wildcard):
                return False
            if isinstance(step, Indexes) and (len(step.items) != 1 or isinstance(step.items[0], tuple)):
                return False
            if isinstance(step, Child) and len(step.names) > 1 and i != len(self.steps) - 1:
                return False
        return True

    def select(self, value: Any) -> Any:
        """The part of a JSON value the path names: one value when definite, else a list of matches."""
        definite = self.definite
        nodes = [value]
        for i, step in enumerate(self.steps):
            leaf = i == len(self.steps) - 1
            nodes = [out for node in nodes for out in _step(step, node, leaf, definite)]
        if definite:
            if not nodes:  # pragma: no cover - _step raises first on a definite path
                raise PathError("no value at this path")
            return nodes[0]
        return nodes

    def select_fields(self, fields: list[str]) -> list[str]:
        """The fields of a CSV row the (index-only) path names, in the order the path names them."""
        if self.is_root or isinstance(self.steps[0], Wildcard):
            return list(fields)
        step = self.steps[0]
        assert isinstance(step, Indexes)
        return _indexes(step, fields, "the record's {n} field{s}")


def _step(step: Step, node: Any, leaf: bool, definite: bool) -> list[Any]:
    if isinstance(step, Wildcard):
        if isinstance(node, dict):
            return list(node.values())
        if isinstance(node, list):
            return list(node)
        return []
    if isinstance(step, Indexes):
        if isinstance(node, list):
            return _indexes(step, node, "an array of {n} element{s}")
        if definite:
            raise PathError(f"an index needs an array, found {kind_of(node)}")
        return []
    if not isinstance(node, dict):
        if definite:
            raise PathError(f"key {step.names[0]!r} needs an object, found {kind_of(node)}")
        return []
    if len(step.names) > 1 and leaf:
        # Jayway's multi-property merge: an object of the named keys that exist, in the path's order.
        return [{name: node[name] for name in step.names if name in node}]
    found = [node[name] for name in step.names if name in node]
    if definite and not found:
        raise PathError(f"no key {step.names[0]!r} in the object")
    return found


def _indexes(step: Indexes, items: list[Any], where: str) -> list[Any]:
    n = len(items)
    out: list[Any] = []
    for item in step.items:
        if isinstance(item, tuple):
            out.extend(items[slice(*item)])  # JavaScript slice(): clamped, end exclusive
            continue
        i = item + n if item < 0 else item
        if not 0 <= i < n:
            raise PathError(f"index {item} is outside {where.format(n=n, s='' if n == 1 else 's')}")
        out.append(items[i])
    return out


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, RawNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return json_dumps(value)


def parse_jsonpath(text: str) -> JsonPath:
    """Parse an expression of the supported subset; JsonPathError says what is not supported."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> JsonPath:
        if not self.text.strip():
            return JsonPath(self.text, ())  # the empty string (length 0 is allowed) means "$"
        self._space()
        if not self._take("$"):
            raise JsonPathError("a JsonPath starts with $")
        steps: list[Step] = []
        while True:
            self._space()
            if self.pos == len(self.text):
                return JsonPath(self.text, tuple(steps))
            if self._take("."):
                steps.append(self._dot())
            elif self._take("["):
                steps.append(self._bracket())
            else:
                raise JsonPathError(f"unexpected {self.text[self.pos]!r} at position {self.pos}")

    def _dot(self) -> Step:
        if self._peek() == ".":
            raise JsonPathError("deep scan (..) is not supported")
        if self._take("*"):
            return Wildcard()
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] in NAME_EXTRA
        ):
            self.pos += 1
        if self.pos == start:
            raise JsonPathError(f"a name must follow '.' at position {start}")
        return Child((self.text[start : self.pos],))

    def _bracket(self) -> Step:
        start = self.pos - 1
        self._space()
        if self._take("*"):
            self._close(start)
            return Wildcard()
        if self._peek() == "'":
            names = [self._quoted()]
            while self._comma():
                names.append(self._quoted())
            self._close(start)
            return Child(tuple(names))
        items = [self._item()]
        while self._comma():
            items.append(self._item())
        self._close(start)
        if sum(isinstance(i, tuple) for i in items) > 1:
            bracket = self.text[start : self.pos]
            raise JsonPathError(
                "only single range filters are supported",
                full=(
                    f"Invalid JsonPath: {self.text}: only single range filters of format (eg: [1:5]) "
                    f"are supported. Format {bracket} is not supported"
                ),
            )
        return Indexes(tuple(items))

    def _quoted(self) -> str:
        self._space()
        if not self._take("'"):
            raise JsonPathError(f"expected a quoted name at position {self.pos}")
        end = self.text.find("'", self.pos)
        if end < 0:
            raise JsonPathError("a quoted name is not closed")
        name = self.text[self.pos : end]
        self.pos = end + 1
        if any(c in name for c in NESTING):
            raise JsonPathError(
                f"nested paths inside a multi-select are not supported ('{name}' is a path, "
                "not a key); select whole children such as $['a','b']"
            )
        return name

    def _item(self) -> int | tuple[int | None, int | None]:
        self._space()
        first = self._int()
        self._space()
        if not self._take(":"):
            if first is None:
                raise JsonPathError(f"expected an index or a range at position {self.pos}")
            return first
        self._space()
        second = self._int()
        self._space()
        if self._peek() == ":":
            raise JsonPathError("a range takes no step ([start:end] only)")
        return (first, second)

    def _int(self) -> int | None:
        start = self.pos
        self._take("-")
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        digits = self.text[start : self.pos]
        if digits in ("", "-"):
            self.pos = start
            return None
        return int(digits)

    def _comma(self) -> bool:
        self._space()
        return self._take(",")

    def _close(self, start: int) -> None:
        self._space()
        if not self._take("]"):
            where = f"at position {self.pos}" if self.pos < len(self.text) else "at the end"
            raise JsonPathError(f"the bracket opened at position {start} is not closed {where}")

    def _space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _take(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False


# --- create-time check (called by runner.contract.spec) -----------------------------------------


def jsonpath_problem(key: str, expr: str, content_type: str | None) -> str | None:
    """Why ``expr`` (the InputFilter or OutputFilter, named by ``key``) cannot run, or None.

    ``content_type`` is the format the filter reads (ContentType for InputFilter, Accept for
    OutputFilter): text/csv records are arrays of fields, so their paths use indexes only.
    """
    try:
        path = parse_jsonpath(expr)
    except JsonPathError as e:
        return e.full or f'Invalid {key}: "{expr}". {e.reason}'
    if content_type == CSV and not path.index_only:
        return (
            f'Invalid {key}: "{expr}". A text/csv record is an array of fields, so only $ and one index '
            "selector such as $[0], $[1:] or $[0,-1] are supported"
        )
    return None
