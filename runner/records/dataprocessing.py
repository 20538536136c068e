"""DataProcessing (docs/contract.md §6.4): InputFilter, JoinSource and OutputFilter on text records.

Per record: InputFilter -> model -> JoinSource -> OutputFilter -> assembly. Pure (no I/O, no Ray):
the feeder hands ``ObjectProcessor`` an object's byte chunks on the way in and each payload's
response body on the way out.

The JSONPath subset and the record text codecs live in ``runner.contract.jsonpath``. Every record keeps
its terminator (``\\n``, ``\\r\\n`` or none for an unterminated last line).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runner.contract.jsonpath import (
    CSV,
    JSON,
    JSON_LINES,
    JsonPath,
    PathError,
    csv_fields,
    csv_line,
    json_dumps,
    json_loads,
    kind_of,
    parse_jsonpath,
)
from runner.errors import RecordFormatError

if TYPE_CHECKING:
    from runner.contract.spec import TransformJobSpec

NEWLINE = b"\n"
# Filtered records are handed to the packer in pieces of about this size, not one by one.
CHUNK_BYTES = 256 * 1024


# --- per object: records in, results out -----------------------------------------------------------


@dataclass(frozen=True)
class RecordProcessing:
    """What the feeder needs to apply a job's DataProcessing (plain values, sent to Ray tasks)."""

    input_filter: str
    output_filter: str
    join: bool
    content_type: str
    accept: str
    whole_object: bool  # SplitType None: the object is one record

    @cached_property
    def input_path(self) -> JsonPath:
        return parse_jsonpath(self.input_filter)

    @cached_property
    def output_path(self) -> JsonPath:
        return parse_jsonpath(self.output_filter)

    @property
    def filters_input(self) -> bool:
        return not self.input_path.is_root

    @property
    def per_record_output(self) -> bool:
        """Results must be split into one per record (to join or filter them); else they pass as sent."""
        return self.join or not self.output_path.is_root

    @property
    def output_csv(self) -> bool:
        """The joined / filtered records are CSV rows (else JSON values)."""
        return (self.content_type if self.join else self.accept) == CSV


def processing_for(spec: TransformJobSpec) -> RecordProcessing | None:
    """The job's DataProcessing for the feeder; None when it is the default (records go untouched)."""
    dp = spec.data_processing
    processing = RecordProcessing(
        input_filter=dp.input_filter,
        output_filter=dp.output_filter,
        join=str(dp.join_source) == "Input",
        content_type=spec.transform_input.content_type or "",
        accept=spec.transform_output.accept or "",
        whole_object=str(spec.transform_input.split_type) == "None",
    )
    if not processing.filters_input and not processing.per_record_output:
        return None
    return processing


def split_terminator(record: bytes) -> tuple[bytes, bytes]:
    """(content, terminator): ``\\r\\n``, ``\\n``, a bare ``\\r`` at the end of the object, or none."""
    if record.endswith(b"\r\n"):
        return record[:-2], record[-2:]
    if record.endswith((b"\n", b"\r")):
        return record[:-1], record[-1:]
    return record, b""


class ObjectProcessor:
    """DataProcessing for one object.

    ``input_chunks`` turns the object's chunk stream into the stream the packer reads (records after
    InputFilter) and, when results are joined or filtered, queues every original record; ``take``
    hands a payload its originals in order; ``output`` turns a payload's response into its output.
    ``input_chunks`` may run in another thread than ``take`` and ``output`` (the deque is thread-safe).
    """

    def __init__(self, processing: RecordProcessing, name: str, single_record: bool = False) -> None:
        self.p = processing
        self.name = name
        # SingleRecord (the resolved strategy) or SplitType None: a payload's result is the whole body.
        self._whole_result = single_record or processing.whole_object
        self._originals: deque[bytes] = deque()
        self._keep = processing.per_record_output

    # -- in --

    def input_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        if self.p.whole_object:
            whole = b"".join(chunks)
            if self._keep:
                self._originals.append(whole)
            yield self._filter_record(whole, 0, 0) if self.p.filters_input else whole
            return
        partial: list[bytes] = []  # the start of a record that continues in a later chunk
        state = [0, 0]  # next record index, its byte offset
        for chunk in chunks:
            end = chunk.rfind(NEWLINE) + 1
            if end:
                # Whole records, copied once (a record longer than a chunk is joined once, not per chunk).
                lines = b"".join([*partial, chunk[:end]]) if partial else chunk[:end]
                partial = [chunk[end:]] if end < len(chunk) else []
                if self.p.filters_input:
                    yield from self._filtered(lines[:-1].split(NEWLINE), b"\n", state)
                else:
                    self._originals.extend(line + NEWLINE for line in lines[:-1].split(NEWLINE))
            elif chunk:
                partial.append(chunk)
            if chunk and not self.p.filters_input:
                # Unfiltered records go to the packer as they came; their originals are queued before
                # the packer can complete a payload holding them.
                yield chunk
        last = b"".join(partial)
        if not last:
            return
        if not self.p.filters_input:
            self._originals.append(last)
            return
        record, offset = state
        filtered = b"".join(self._filtered([last], b"", state))
        if not filtered:
            raise RecordFormatError(
                f"{self.name}: record {record} at byte {offset} is empty after InputFilter "
                f"{self.p.input_filter} and, as the last line with no newline, would not be sent "
                "at all; end the object with a newline or change the filter",
                uri=self.name,
                record_index=record,
                byte_offset=offset,
            )
        yield filtered

    def _filtered(self, lines: list[bytes], newline: bytes, state: list[int]) -> Iterator[bytes]:
        """The records ``line + newline`` after InputFilter, in pieces of about CHUNK_BYTES."""
        out: list[bytes] = []
        size = 0
        for line in lines:
            rec = line + newline
            if self._keep:
                self._originals.append(rec)
            filtered = self._filter_record(rec, state[0], state[1])
            state[0] += 1
            state[1] += len(rec)
            out.append(filtered)
            size += len(filtered)
            if size >= CHUNK_BYTES:
                yield b"".join(out)
                out, size = [], 0
        if out:
            yield b"".join(out)

    def _filter_record(self, rec: bytes, index: int, offset: int) -> bytes:
        content, term = split_terminator(rec)
        path = self.p.input_path
        try:
            text = content.decode("utf-8")
            if self.p.content_type == CSV:
                return csv_line(path.select_fields(csv_fields(text))).encode() + term
            return json_dumps(path.select(_json_record(text))).encode() + term
        except (PathError, UnicodeDecodeError) as e:
            raise RecordFormatError(
                f"{self.name}: record {index} at byte {offset}: InputFilter {self.p.input_filter}: {e}",
                uri=self.name,
                record_index=index,
                byte_offset=offset,
            ) from None

    def take(self, count: int) -> list[bytes]:
        """The next ``count`` original records (empty when results pass through untouched)."""
        if not self._keep:
            return []
        return [self._originals.popleft() for _ in range(count)]

    # -- out --

    def output(self, body: bytes, records: Sequence[bytes], first_record: int, payload: int) -> bytes:
        """A payload's response turned into its output records: joined, filtered, each with its input
        record's terminator. Without JoinSource or OutputFilter the body passes unchanged."""
        if not self.p.per_record_output:
            return body
        results = self._results(body, len(records), first_record, payload)
        join, as_csv, path = self.p.join, self.p.output_csv, self.p.output_path
        out: list[bytes] = []
        for index, rec, result in zip(itertools.count(first_record), records, results, strict=False):
            content, term = split_terminator(rec)
            step = "JoinSource Input"
            try:
                joined: Any = result
                if join:
                    text = content.decode("utf-8")
                    joined = csv_fields(text) + result if as_csv else join_json(_json_record(text), result)
                step = f"OutputFilter {self.p.output_filter}"
                line = csv_line(path.select_fields(joined)) if as_csv else json_dumps(path.select(joined))
            except (PathError, UnicodeDecodeError) as e:
                raise RecordFormatError(
                    f"{self.name}: record {index}: {step}: {e}", uri=self.name, record_index=index
                ) from None
            out.append(line.encode() + term)
        return b"".join(out)

    def _results(self, body: bytes, count: int, first: int, payload: int) -> list[Any]:
        """One parsed result per record: CSV results as field lists, JSON results as values."""
        csv_result = self.p.accept == CSV
        try:
            text = body.decode("utf-8")
            if self._whole_result:
                if csv_result:
                    return [csv_fields(text.removesuffix("\n").removesuffix("\r"))]
                return [_json_record(text)]
            if csv_result or self.p.accept == JSON_LINES:
                lines = text.split("\n")
                if lines[-1] == "":
                    lines.pop()
                items = [line[:-1] if line.endswith("\r") else line for line in lines]
                if len(items) == count:
                    return [csv_fields(s) if csv_result else _json_record(s) for s in items]
                found = f"{len(items)} lines"
            else:
                value = _json_record(text)
                if not isinstance(value, list):
                    found = f"{kind_of(value)} instead of an array"
                elif len(value) == count:
                    return value
                else:
                    found = f"an array of {len(value)} elements"
        except (PathError, UnicodeDecodeError) as e:
            raise RecordFormatError(
                f"{self.name}: payload {payload}: the model's {self.p.accept} response cannot be split "
                f"into one result per record: {e}",
                uri=self.name,
                record_index=first,
            ) from None
        unit = "one line" if self.p.accept != JSON else "one array element"
        raise RecordFormatError(
            f"{self.name}: payload {payload} (records {first} to {first + count - 1}): the model returned "
            f"{found} for {count} records; JoinSource and OutputFilter need {unit} per record in the "
            f"{self.p.accept} response",
            uri=self.name,
            record_index=first,
        )


def join_json(record: Any, result: Any) -> Any:
    """JoinSource Input for JSON: an object gets ``SageMakerOutput`` (last, replacing any such key);
    anything else is wrapped as ``{"SageMakerInput": ..., "SageMakerOutput": ...}``."""
    if isinstance(record, dict):
        joined = {k: v for k, v in record.items() if k != "SageMakerOutput"}
        joined["SageMakerOutput"] = result
        return joined
    return {"SageMakerInput": record, "SageMakerOutput": result}


def _json_record(text: str) -> Any:
    try:
        return json_loads(text)
    except json.JSONDecodeError as e:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise PathError(f"not valid JSON ({e.msg} at column {e.colno}): {shown!r}") from None
