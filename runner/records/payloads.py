"""One object's bytes to its payloads: gunzip, then the job's framing and packing (or an opt-in
knob's), with DataProcessing's InputFilter applied before the cap is counted. Pure: no Ray, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.records.batching import Payload, pack, pack_whole, pack_with_header
from runner.records.columnar import pack_columnar
from runner.records.dataprocessing import ObjectProcessor, RecordProcessing
from runner.records.knobs import InputKnobs
from runner.records.plan import InputObject
from runner.records.splitters import Splitter, splitter_for
from runner.records.streams import gunzip


@dataclass(frozen=True)
class Packing:
    """How every object of a job becomes payloads (resolved values, after execution parameters)."""

    split_type: SplitType
    compression: CompressionType
    strategy: BatchStrategy
    limit_bytes: int | None  # None: no cap (MaxPayloadInMB 0)
    limit_mb: int
    # DataProcessing (docs/contract.md §6.4); None when the job leaves it at the default.
    processing: RecordProcessing | None = None
    # Opt-in input/output extensions (docs/contract.md §9); the default is SageMaker's behaviour.
    knobs: InputKnobs = InputKnobs()  # noqa: RUF009  (frozen: one shared value is safe)

    def splitter(self) -> Splitter | None:
        """The record framing (None for SplitType None: the object is one record)."""
        if self.split_type is SplitType.NONE:
            return None
        return splitter_for(self.split_type, csv_quoted_newlines=self.knobs.csv_quoted_newlines)


def payloads_of(
    obj: InputObject,
    chunks: Iterable[bytes],
    packing: Packing,
    processor: ObjectProcessor | None = None,
    on_header: Callable[[bytes], None] | None = None,
) -> Iterator[Payload]:
    """One object's payloads, from its (possibly gzipped) bytes: the records SageMaker's greedy rule
    packs, or the opt-in knobs' framings. ``on_header`` gets a text/csv object's header line under
    ``csv_header first-line``."""
    if packing.compression is CompressionType.GZIP:
        chunks = gunzip(chunks, obj.name)
    knobs = packing.knobs
    if knobs.split_columnar:
        return pack_columnar(
            chunks, knobs.content_type, packing.strategy, packing.limit_bytes, obj.name, packing.limit_mb
        )
    splitter = packing.splitter()
    if knobs.csv_header and splitter is not None:
        # The header is taken off before DataProcessing sees the records; InputFilter applies to it too,
        # so the header sent names the columns sent.
        processing = packing.processing
        header_sent = None
        if processing is not None and processing.filters_input:

            def header_sent(header: bytes) -> bytes:
                return b"".join(ObjectProcessor(processing, obj.name).input_chunks([header]))

        return pack_with_header(
            chunks,
            splitter,
            packing.strategy,
            packing.limit_bytes,
            obj.name,
            packing.limit_mb,
            on_header=on_header,
            records=processor.input_chunks if processor is not None else None,
            header_sent=header_sent,
        )
    if processor is not None:
        # InputFilter per record before packing, so the payload limit counts the bytes sent.
        chunks = processor.input_chunks(chunks)
    if splitter is None:
        return pack_whole(chunks, packing.limit_bytes, obj.name, packing.limit_mb)
    return pack(
        chunks,
        splitter,
        packing.strategy,
        packing.limit_bytes,
        obj.name,
        packing.limit_mb,
    )
