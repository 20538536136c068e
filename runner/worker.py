"""The Ray actor that runs the model: loads it once, then turns payloads into response bodies.

User exceptions are wrapped here, and only here, with the object and payload they failed on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray

from runner.errors import HandlerError
from runner.handler import Handler
from runner.model import ModelSpec, ensure_model_dir


class ModelWorker:
    """One model server process. ``setup`` does the loading so its errors reach the caller intact
    (an exception in an actor's constructor only says that the actor died)."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._content_type: str | None = None
        self._accept: str | None = None
        self.payloads = 0
        self.busy_s = 0.0

    def setup(
        self,
        model: ModelSpec,
        environment: Mapping[str, str],
        cache_dir: str,
        threads: int,
        content_type: str | None,
        accept: str | None,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        # Hooks read their settings from os.environ, as in a SageMaker container; the thread count
        # matches the worker's CPU share unless the model or job Environment sets it.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ.update(environment)
        model_dir = ensure_model_dir(model.model_data_url, Path(cache_dir))
        handler = Handler.load(model_dir, image=model.image, environ=dict(os.environ))
        handler.load_model()
        self._handler = handler
        self._content_type = content_type
        self._accept = accept
        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "model_load_s": time.perf_counter() - t0,
            "family": handler.family,
        }

    def execution_parameters(self) -> dict[str, Any] | None:
        assert self._handler is not None, "setup() first"
        return self._handler.execution_parameters()

    def transform(self, data: bytes, name: str, index: int) -> bytes:
        assert self._handler is not None, "setup() first"
        t0 = time.perf_counter()
        try:
            body, _ = self._handler.transform(data, self._content_type, self._accept)
        except HandlerError as e:
            raise type(e)(
                f"{name}: payload {index}: {e}",
                hook=e.hook,
                uri=name,
                payload_index=index,
                traceback_text=e.traceback_text,
            ) from None
        finally:
            self.busy_s += time.perf_counter() - t0
            self.payloads += 1
        return body

    def stats(self) -> dict[str, Any]:
        return {"payloads": self.payloads, "busy_s": round(self.busy_s, 3)}


def probe_execution_parameters(
    model: ModelSpec, environment: Mapping[str, str], cache_dir: str
) -> dict[str, Any] | None:
    """The model's own execution parameters (``execution_parameters_fn``), read before the workers are
    sized; on one node this also fills the model cache the workers then reuse."""
    os.environ.update(environment)
    model_dir = ensure_model_dir(model.model_data_url, Path(cache_dir))
    return Handler.load(model_dir, image=model.image, environ=dict(os.environ)).execution_parameters()


RemoteModelWorker = ray.remote(ModelWorker)
remote_probe_execution_parameters = ray.remote(num_cpus=0, max_retries=0)(probe_execution_parameters)
