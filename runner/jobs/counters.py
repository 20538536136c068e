"""A job's counters as the engine reports them and the store keeps them."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class ProgressSink:
    """What an object task's objects have done since the task last told the driver (``take``, which
    ``feeder.run_objects`` yields every PROGRESS_EVERY_S). Thread-safe: grouped objects share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta: dict[str, int] = {}

    def add(self, delta: Mapping[str, int]) -> None:
        with self._lock:
            for k, v in delta.items():
                if v:
                    self._delta[k] = self._delta.get(k, 0) + v

    def take(self) -> dict[str, int]:
        with self._lock:
            delta, self._delta = self._delta, {}
        return delta
