"""A model worker keeps freed memory for its next payload (runner/engine/heap.py): payload-sized
buffers made and dropped one after another reuse the same pages instead of faulting in fresh ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
from runner.engine.heap import keep_freed_memory

assert keep_freed_memory()
size = 6 << 20  # a workload-T payload
body = b"1.0,2.0\\n" * (size // 8)
for _ in range(3):  # the first rounds may grow the heap
    text = body.decode()
    again = text.encode()
    del text, again
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    text = body.decode()
    again = text.encode()
    del text, again
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_payload_sized_buffers_reuse_their_pages() -> None:
    probe = [sys.executable, "-c", PROBE]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    faults = int(done.stdout.strip())
    one_buffer = (6 << 20) // 4096  # the faults of one fresh 6 MiB buffer
    # 40 buffers made and dropped: fresh pages for each would be ~40 x 1,536 faults
    assert faults < one_buffer, f"{faults} page faults for 40 payload-sized buffers made after warm-up"
