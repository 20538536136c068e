"""Keep freed memory in a model worker's process for the next payload instead of giving it back.

A payload is a few MB, and each one passes through several buffers of its size (the socket read, the
joined body, the ``str`` that ``text/csv`` decodes to, the bytes an ``input_fn`` encodes again).
glibc gives the freed top of its heap back to the kernel at once, so each new buffer is fresh pages
that the kernel must fault in and zero: measured here, 35 decode/encode rounds of a 6 MB payload
took 0.67 s (0.51 s of it in the kernel) with glibc's defaults and 0.07 s with a 64 MiB top pad.
``mallopt(M_TOP_PAD)`` keeps that much of the freed top (a bounded amount a process, reused by the
next payload). Setting it also freezes glibc's mmap threshold where it stands, and a buffer above the
threshold is mmapped afresh each time, whatever the pad: at the default 128 KiB every payload-sized
buffer was, and one of workload T's two workers took ~75,000 page faults a job where the other, whose
threshold had grown before, took ~2,000. So the threshold is set too, to glibc's ceiling for it
(32 MiB): buffers up to that come from the heap and reuse its pages. On workload T
(benchmarks/RESULTS.md) the two workers used ~0.45 CPU-s less with the pad. The object task gained
nothing measurable (its payloads live in Ray's object store, not its heap), so only the workers set
it. Only glibc has it; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TOP_PAD = -2  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's top pad and mmap threshold once in this process; True if both were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    threshold = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return threshold and bool(mallopt(M_TOP_PAD, TOP_PAD_BYTES))
