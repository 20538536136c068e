"""Record framings, one module each, in a registry keyed by SplitType.

A splitter only finds record boundaries in a byte buffer; packing records into payloads is
``runner.records.batching``'s job. Splitters are pure (no I/O) so they can be tested on plain bytes.
"""

from __future__ import annotations

from runner.contract.spec import SplitType
from runner.records.splitters.base import Splitter, greedy_end_by_records
from runner.records.splitters.csv import CsvSplitter
from runner.records.splitters.line import LineSplitter
from runner.records.splitters.recordio import RecordIOSplitter
from runner.records.splitters.tfrecord import TFRecordSplitter

__all__ = ["Splitter", "greedy_end_by_records", "splitter_for"]
from runner.errors import Problem, SpecError


def splitter_for(split_type: SplitType, *, csv_quoted_newlines: bool = False) -> Splitter:
    """The splitter for a SplitType other than None (None sends whole objects and needs no splitter).

    ``csv_quoted_newlines`` (docs/contract.md §9, for ``text/csv`` objects only; the caller checks the content
    type) makes Line records end at newlines outside RFC 4180 quotes.
    """
    registry: dict[SplitType, Splitter] = {
        SplitType.LINE: CsvSplitter() if csv_quoted_newlines else LineSplitter(),
        SplitType.RECORDIO: RecordIOSplitter(),
        SplitType.TFRECORD: TFRecordSplitter(),
    }
    try:
        return registry[split_type]
    except KeyError:
        raise SpecError(
            [
                Problem(
                    "transformInput.splitType",
                    str(split_type),
                    f"Member must be one of the split types this runner supports: {sorted(registry)}",
                )
            ]
        ) from None
