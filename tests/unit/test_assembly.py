"""AssembleWith None / Line on the bytes that reach the writer (docs/contract.md §6.2)."""

from __future__ import annotations

import pytest

from runner.contract.spec import AssembleWith
from runner.records.assembly import OutputAssembler
from runner.storage import ObjectInfo


class Recorder:
    """An in-memory ObjectWriter: what would become the .out, and whether it was committed."""

    def __init__(self) -> None:
        self.data = b""
        self.state = "open"

    def write(self, data: bytes | memoryview) -> None:
        self.data += bytes(data)

    def commit(self) -> ObjectInfo:
        self.state = "committed"
        return ObjectInfo("s3://b/k.out", "k.out", len(self.data), "etag")

    def abort(self) -> None:
        self.state = "aborted"


@pytest.mark.parametrize(
    ("assemble_with", "results", "expected"),
    [
        ("None", [b"[6.0]", b"[15.0]"], b"[6.0][15.0]"),
        ("Line", [b"[6.0]", b"[15.0]"], b"[6.0]\n[15.0]\n"),
        ("Line", [b"6.0\n15.0\n", b"24.0\n"], b"6.0\n15.0\n24.0\n"),  # no newline added after one
        ("Line", [b""], b"\n"),
        ("None", [b"6.0\n", b"7.0"], b"6.0\n7.0"),
    ],
)
def test_assembly(assemble_with: str, results: list[bytes], expected: bytes) -> None:
    w = Recorder()
    with OutputAssembler(w, AssembleWith(assemble_with)) as out:
        for r in results:
            out.add(r)
        out.commit()
    assert (w.data, w.state) == (expected, "committed")
    assert out.bytes_out == len(expected)


def test_an_error_aborts_the_upload() -> None:
    w = Recorder()
    with pytest.raises(RuntimeError), OutputAssembler(w, AssembleWith.LINE) as out:
        out.add(b"1")
        raise RuntimeError("payload 2 failed")
    assert w.state == "aborted"
