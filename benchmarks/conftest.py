"""Benchmarks reuse the test suite's embedded S3 fixture and add a local Ray and a memory sampler."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.conftest import s3_server  # noqa: F401  (a fixture, used by name)


@pytest.fixture(scope="session")
def ray_bench(s3_server: Any) -> Iterator[None]:  # noqa: F811
    import ray

    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


class PeakRss:
    """Samples the RSS of this process and all its descendants (Ray's raylet and workers included),
    leaving out the embedded S3 server, which stands in for S3 and is not part of either side."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a process may end while we look
                    if p.name() != "weed":
                        total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
