"""Compare two output prefixes (``s3://`` or ``file://``): the same ``.out`` objects, record for record.

Objects are matched by their key relative to each prefix; an object present on one side only is a
difference. Records are the lines of each object, aligned by number. A record equal byte for byte is
equal; otherwise both sides are read as JSON (numbers compared within the tolerance, everything else
exactly, field named by its path ``$.a[0]``) or, if either is not JSON, as one CSV row (a field that is
a number on both sides compared within the tolerance, any other field exactly, named ``column N``).
Objects are streamed, never held whole in memory.

Tolerance: numbers ``x`` and ``y`` are equal when ``math.isclose(x, y, rel_tol, abs_tol)`` (both 0 by
default: exact numeric equality, so ``1.0`` equals ``1`` but not ``1.0000001``); two NaNs are equal.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.storage import Storage, scheme_of, storage_for

OUTPUT_SUFFIX = ".out"
DEFAULT_MAX_DIFFS = 10
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(nan|inf|infinity)\s*$", re.I)


class CompareUsageError(ValueError):
    """The comparison cannot be made as asked (bad prefix, bad tolerance, nothing to compare)."""


@dataclass(frozen=True)
class Tolerance:
    rel_tol: float = 0.0
    abs_tol: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rel_tol", "abs_tol"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise CompareUsageError(f"{name.replace('_', '-')} must be a finite number >= 0, not {value}")


@dataclass(frozen=True)
class Difference:
    """One difference: ``record`` is the 1-based line number (None for a missing object)."""

    key: str
    record: int | None
    field: str | None
    a: str | None
    b: str | None
    what: str


@dataclass
class Comparison:
    a: str
    b: str
    tolerance: Tolerance
    objects_compared: int = 0
    objects_equal: int = 0
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    records_compared: int = 0
    records_different: int = 0
    differences: list[Difference] = field(default_factory=list)
    total_differences: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0

    @property
    def equal(self) -> bool:
        return self.total_differences == 0


def _prefix(uri: str) -> str:
    """The prefix as a folder (``…/``), a ``file://`` path made absolute."""
    scheme = scheme_of(uri)
    if scheme not in ("s3", "file"):
        raise CompareUsageError(f"{uri!r} is not an s3:// or file:// prefix")
    if scheme == "file":
        raw = uri[len("file://") :]
        if not raw:
            raise CompareUsageError(f"{uri!r} names no path")
        uri = "file://" + os.path.abspath(os.path.expanduser(raw))
    return uri if uri.endswith("/") else uri + "/"


def _outputs(storage: Storage, prefix: str) -> dict[str, str]:
    """Relative key -> URI of every ``.out`` object under ``prefix``."""
    found = {}
    for info in storage.list_objects(prefix):
        if info.uri.endswith(OUTPUT_SUFFIX) and info.uri.startswith(prefix):
            found[info.uri[len(prefix) :]] = info.uri
    return found


def _lines(storage: Storage, uri: str) -> Iterator[bytes]:
    """The object's lines without their ``\\n``; a final newline does not make an empty last record."""
    rest = b""
    for chunk in storage.iter_chunks(uri):
        rest += chunk
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode("utf-8", errors="replace")


class _Comparer:
    def __init__(self, result: Comparison, max_diffs: int) -> None:
        self.result = result
        self.max_diffs = max_diffs

    def add(self, diff: Difference) -> None:
        self.result.total_differences += 1
        if len(self.result.differences) < self.max_diffs:
            self.result.differences.append(diff)

    def numbers_equal(self, x: float, y: float) -> bool:
        if x == y or (math.isnan(x) and math.isnan(y)):
            return True
        if math.isfinite(x) and math.isfinite(y):
            diff = abs(x - y)
            self.result.max_abs_diff = max(self.result.max_abs_diff, diff)
            self.result.max_rel_diff = max(self.result.max_rel_diff, diff / max(abs(x), abs(y)))
        t = self.result.tolerance
        return math.isclose(x, y, rel_tol=t.rel_tol, abs_tol=t.abs_tol)

    def record(self, key: str, n: int, a: bytes, b: bytes) -> int:
        """Compare one record; returns how many differences it has."""
        if a == b:
            return 0
        before = self.result.total_differences
        try:
            ja, jb = json.loads(a), json.loads(b)
        except ValueError:
            self.csv_row(key, n, a, b)
        else:
            self.json_value(key, n, "$", ja, jb)
        return self.result.total_differences - before

    def json_value(self, key: str, n: int, path: str, a: Any, b: Any) -> None:
        def is_num(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if is_num(a) and is_num(b):
            if not self.numbers_equal(float(a), float(b)):
                self.add(Difference(key, n, path, json.dumps(a), json.dumps(b), "number differs"))
        elif isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                sub = f"{path}.{k}" if re.fullmatch(r"[A-Za-z_]\w*", k) else f"{path}[{json.dumps(k)}]"
                if k not in b or k not in a:
                    side = "A" if k in a else "B"
                    value = a.get(k, b.get(k))
                    self.add(
                        Difference(
                            key,
                            n,
                            sub,
                            json.dumps(value) if k in a else None,
                            json.dumps(value) if k in b else None,
                            f"key only in {side}",
                        )
                    )
                else:
                    self.json_value(key, n, sub, a[k], b[k])
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.add(Difference(key, n, f"{path} (length)", str(len(a)), str(len(b)), "lengths differ"))
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                self.json_value(key, n, f"{path}[{i}]", x, y)
        elif a != b or type(a) is not type(b):
            self.add(Difference(key, n, path, json.dumps(a), json.dumps(b), "value differs"))

    def csv_row(self, key: str, n: int, a: bytes, b: bytes) -> None:
        ta, tb = _text(a) or "", _text(b) or ""
        try:
            ra = next(csv.reader([ta]), [])
            rb = next(csv.reader([tb]), [])
        except csv.Error:
            self.add(Difference(key, n, None, ta, tb, "record differs"))
            return
        if len(ra) != len(rb):
            self.add(Difference(key, n, "(field count)", str(len(ra)), str(len(rb)), "field counts differ"))
        for i, (x, y) in enumerate(zip(ra, rb, strict=False), start=1):
            if x == y:
                continue
            if _NUMBER.match(x) and _NUMBER.match(y):
                if self.numbers_equal(float(x), float(y)):
                    continue
                self.add(Difference(key, n, f"column {i}", x, y, "number differs"))
            else:
                self.add(Difference(key, n, f"column {i}", x, y, "value differs"))


def compare_prefixes(
    a: str, b: str, tolerance: Tolerance | None = None, max_diffs: int = DEFAULT_MAX_DIFFS
) -> Comparison:
    """Compare every ``.out`` object under two prefixes; keeps the first ``max_diffs`` differences."""
    if max_diffs < 0:
        raise CompareUsageError(f"max-diffs must be >= 0, not {max_diffs}")
    pa, pb = _prefix(a), _prefix(b)
    sa, sb = storage_for(pa), storage_for(pb)
    outs_a, outs_b = _outputs(sa, pa), _outputs(sb, pb)
    if not outs_a and not outs_b:
        raise CompareUsageError(f"no {OUTPUT_SUFFIX} objects under {pa} nor under {pb}")
    result = Comparison(pa, pb, tolerance or Tolerance())
    comparer = _Comparer(result, max_diffs)
    for key in sorted(set(outs_a) | set(outs_b)):
        if key not in outs_b:
            result.only_in_a.append(key)
            comparer.add(Difference(key, None, None, outs_a[key], None, "object missing in B"))
            continue
        if key not in outs_a:
            result.only_in_b.append(key)
            comparer.add(Difference(key, None, None, None, outs_b[key], "object missing in A"))
            continue
        result.objects_compared += 1
        different = 0
        la, lb = _lines(sa, outs_a[key]), _lines(sb, outs_b[key])
        n = 0
        while True:
            n += 1
            ra, rb = next(la, None), next(lb, None)
            if ra is None and rb is None:
                break
            result.records_compared += 1
            if ra is None or rb is None:
                side = "B" if ra is None else "A"
                comparer.add(Difference(key, n, None, _text(ra), _text(rb), f"record only in {side}"))
                found = 1
            else:
                found = comparer.record(key, n, ra, rb)
            if found:
                result.records_different += 1
                different += 1
        if not different:
            result.objects_equal += 1
    return result


def _show(v: str | None, width: int = 60) -> str:
    if v is None:
        return "(none)"
    return repr(v if len(v) <= width else v[: width - 1] + "…")


def summary_lines(c: Comparison) -> list[str]:
    """The comparison for people: counts, then the first differences one per line."""
    t = c.tolerance
    lines = [
        f"A: {c.a}",
        f"B: {c.b}",
        f"objects: {c.objects_compared} in both ({c.objects_equal} equal, "
        f"{c.objects_compared - c.objects_equal} different), {len(c.only_in_a)} only in A, "
        f"{len(c.only_in_b)} only in B",
        f"records: {c.records_compared:,} compared, {c.records_different:,} different; "
        f"largest numeric difference seen: {c.max_abs_diff:.3g} absolute, {c.max_rel_diff:.3g} relative "
        f"(tolerance: rel {t.rel_tol:g}, abs {t.abs_tol:g})",
    ]
    for key in c.only_in_a:
        lines.append(f"only in A: {key}")
    for key in c.only_in_b:
        lines.append(f"only in B: {key}")
    if c.differences:
        more = c.total_differences - len(c.differences)
        lines.append(f"first {len(c.differences)} of {c.total_differences} differences:")
        for d in c.differences:
            if d.record is None:
                continue  # missing objects are listed above
            where = f"{d.key} record {d.record}" + (f" {d.field}" if d.field else "")
            lines.append(f"  {where}: {d.what}: A {_show(d.a)} B {_show(d.b)}")
        if more > 0:
            lines.append(f"  … and {more} more (raise --max-diffs to see them)")
    lines.append("EQUAL" if c.equal else f"DIFFERENT ({c.total_differences} differences)")
    return lines


def comparison_json(c: Comparison) -> dict[str, Any]:
    return {
        "a": c.a,
        "b": c.b,
        "equal": c.equal,
        "rel_tol": c.tolerance.rel_tol,
        "abs_tol": c.tolerance.abs_tol,
        "objects_compared": c.objects_compared,
        "objects_equal": c.objects_equal,
        "only_in_a": c.only_in_a,
        "only_in_b": c.only_in_b,
        "records_compared": c.records_compared,
        "records_different": c.records_different,
        "total_differences": c.total_differences,
        "max_abs_diff": c.max_abs_diff,
        "max_rel_diff": c.max_rel_diff,
        "differences": [d.__dict__ for d in c.differences],
    }
