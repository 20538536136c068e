"""One input object's output: results in payload order, joined per AssembleWith (docs/contract.md §6.2).

Bytes go straight to a multipart upload; nothing is visible until ``commit``, and ``abort`` leaves
neither an object nor an open upload, so a failed object never has a partial ``.out``.
"""

from __future__ import annotations

from types import TracebackType

from runner.contract.spec import AssembleWith
from runner.storage import ObjectInfo, ObjectWriter

NEWLINE = b"\n"


class OutputAssembler:
    """Writes results in the order they are added; the caller adds them in payload order."""

    def __init__(self, writer: ObjectWriter, assemble_with: AssembleWith) -> None:
        self._writer = writer
        self._assemble_with = assemble_with
        self.results = 0
        self.bytes_out = 0
        self._closed = False

    def add(self, body: bytes) -> None:
        # AssembleWith Line adds a newline after each result unless it already ends with one (the
        # service's exact rule is unpublished; this keeps CSV / JSON Lines responses byte for byte).
        if self._assemble_with is AssembleWith.LINE and not body.endswith(NEWLINE):
            # Two writes rather than a concatenation: results can be payload-sized.
            self._writer.write(body)
            self._writer.write(NEWLINE)
            self.bytes_out += len(body) + 1
        else:
            self._writer.write(body)
            self.bytes_out += len(body)
        self.results += 1

    def commit(self) -> ObjectInfo:
        self._closed = True
        return self._writer.commit()

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.abort()

    def __enter__(self) -> OutputAssembler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
