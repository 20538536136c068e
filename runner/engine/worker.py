"""The Ray actor that runs the model: loads it once, then turns payloads into response bodies.

The model runs either in-process (the SageMaker hooks, ``handler.py``) or in its own serving
container (``container.py``: one model server per worker); ``choose_runtime`` decides per job.
User exceptions are wrapped here, and only here, with the object and payload they failed on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from runner.config import ModelRuntime
from runner.engine.heap import keep_freed_memory
from runner.engine.sizing import InstanceSizing
from runner.errors import HandlerError
from runner.jobs.counters import WorkerInfo
from runner.model.artifacts import ModelSpec, ensure_model_dir, install_requirements
from runner.model.container import ModelServer
from runner.model.frameworks import check_frameworks, versions_line
from runner.model.handler import Handler
from runner.model.runtime import RuntimeSettings, choose_runtime
from runner.records.ranges import ByteRange, record_count
from runner.storage import storage_for
from runner.storage.s3 import S3Settings


def use_requirements(model_dir: Path, cache_dir: Path) -> None:
    """Make ``code/requirements.txt``'s packages importable in this process (installed once per node)."""
    target = install_requirements(model_dir, cache_dir)
    if target is not None and str(target) not in sys.path:
        sys.path.insert(0, str(target))


@dataclass(frozen=True)
class RangeResult:
    """What a ranged payload gave: the response body, and how many records the payload held (the
    object task never sees the bytes, so the worker counts them)."""

    body: bytes
    records: int


def _read(where: ByteRange, s3: S3Settings | None) -> bytes:
    """A ranged payload's bytes, pinned to its object's ETag."""
    return storage_for(where.uri, s3).read_range(where.uri, where.start, where.end, where.etag)


class ModelWorker:
    """One model server process. ``setup`` does the loading so its errors reach the caller intact
    (an exception in an actor's constructor only says that the actor died)."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._server: ModelServer | None = None
        self._content_type: str | None = None
        self._accept: str | None = None
        self.payloads = 0
        self.busy_s = 0.0
        self._record_delay_s = 0.0
        # The next ranged payload's read, started while this one runs (transform_range's ``then``).
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: tuple[ByteRange, Future[bytes]] | None = None
        self.payloads_read_ahead = 0

    def setup(
        self,
        model: ModelSpec,
        environment: Mapping[str, str],
        cache_dir: str,
        threads: int,
        content_type: str | None,
        accept: str | None,
        runtime: RuntimeSettings | None = None,
    ) -> WorkerInfo:
        t0 = time.perf_counter()
        keep_freed_memory()
        # Hooks (and a server process) read their settings from os.environ, as in a SageMaker
        # container; the thread count matches the worker's CPU share unless an Environment sets it.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ.update(environment)
        model_dir = ensure_model_dir(model.model_data_url, Path(cache_dir), model.artifact_key)
        settings = runtime or RuntimeSettings()
        self._record_delay_s = settings.record_delay_s
        mode, why = choose_runtime(model, model_dir, settings.model_runtime, os.environ)
        self._content_type = content_type
        self._accept = accept
        info = WorkerInfo(pid=os.getpid(), node_id=ray.get_runtime_context().get_node_id())
        if mode is ModelRuntime.CONTAINER:
            server = _model_server(
                model,
                model_dir,
                environment,
                settings,
                f"worker-{os.getpid()}",
                content_type,
                accept,
                threads,
            )
            server.start()
            self._server = server
            info = replace(info, **server.describe())
        else:
            handler, versions = _handler(model, model_dir, Path(cache_dir), settings)
            handler.load_model()
            self._handler = handler
            info = replace(info, family=handler.family, frameworks=versions)
        return replace(info, runtime=mode, runtime_reason=why, model_load_s=time.perf_counter() - t0)

    def execution_parameters(self) -> dict[str, Any] | None:
        if self._server is not None:
            return self._server.execution_parameters()
        assert self._handler is not None, "setup() first"
        return self._handler.execution_parameters()

    def transform_range(
        self,
        where: ByteRange,
        s3: S3Settings | None,
        name: str,
        index: int,
        then: ByteRange | None = None,
    ) -> RangeResult:
        """A ranged payload: its bytes read here, transformed, and its records counted (the object task
        never sees its bytes). ``then``: the range this worker is sent next, read meanwhile on a thread
        so that its bytes are here when its call starts instead of the model waiting on the GET."""
        data = self._bytes_of(where, s3)
        if then is not None:
            self._read_ahead(then, s3)
        records = record_count(data, where.lines)
        return RangeResult(self.transform(data, name, index, records), records)

    def _bytes_of(self, where: ByteRange, s3: S3Settings | None) -> bytes:
        """``where``'s bytes: the read-ahead's if it read this range, else a read of its own. A hint
        for another range (the object task sent this worker something else) is dropped."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == where:
            try:
                data = ahead[1].result()
            except Exception:  # read it again below: that read's error is the one raised
                pass
            else:
                self.payloads_read_ahead += 1
                return data
        elif ahead is not None:
            ahead[1].cancel()
        return _read(where, s3)

    def _read_ahead(self, where: ByteRange, s3: S3Settings | None) -> None:
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._ahead = (where, self._reader.submit(_read, where, s3))

    def transform(self, data: bytes, name: str, index: int, records: int = 1) -> bytes:
        t0 = time.perf_counter()
        if self._record_delay_s:
            time.sleep(self._record_delay_s * records)
        if self._server is not None:
            try:
                return self._server.invoke(data, name, index)
            finally:
                self.busy_s += time.perf_counter() - t0
                self.payloads += 1
        assert self._handler is not None, "setup() first"
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

    def stats(self) -> WorkerInfo:
        """What this worker has done since it started (only the counting members are set)."""
        restarts = self._server.restarts if self._server is not None else None
        return WorkerInfo(
            payloads=self.payloads,
            busy_s=round(self.busy_s, 3),
            payloads_read_ahead=self.payloads_read_ahead,
            server_restarts=restarts,
        )

    def shutdown(self) -> None:
        """Stop the model server (a killed actor's server gets SIGTERM from the kernel anyway)."""
        if self._server is not None:
            self._server.stop()


def probe_execution_parameters(
    model: ModelSpec,
    environment: Mapping[str, str],
    cache_dir: str,
    runtime: RuntimeSettings | None = None,
) -> dict[str, Any] | None:
    """The model's own execution parameters (``execution_parameters_fn``, or a serving container's
    ``GET /execution-parameters`` from a server started for this), read before the workers are sized;
    on one node this also fills the model cache the workers then reuse. The task's process serves
    other tasks later, so its environment is put back afterwards."""
    saved = dict(os.environ)
    os.environ.update(environment)
    try:
        model_dir = ensure_model_dir(model.model_data_url, Path(cache_dir), model.artifact_key)
        settings = runtime or RuntimeSettings()
        mode, _ = choose_runtime(model, model_dir, settings.model_runtime, os.environ)
        if mode is ModelRuntime.HOOKS:
            return _handler(model, model_dir, Path(cache_dir), settings)[0].execution_parameters()
        server = _model_server(model, model_dir, environment, settings, f"probe-{os.getpid()}")
        try:
            server.start()
            return server.execution_parameters()
        finally:
            server.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _handler(
    model: ModelSpec, model_dir: Path, cache_dir: Path, settings: RuntimeSettings
) -> tuple[Handler, str | None]:
    """The model's hooks, with code/requirements.txt importable first (unless turned off), once the
    image's framework versions are checked against what the script would import; and which versions
    those are (None: the image names none)."""
    if settings.install_requirements:
        use_requirements(model_dir, cache_dir)
    checks = check_frameworks(model.image, settings.framework_versions)
    return Handler.load(model_dir, image=model.image, environ=dict(os.environ)), versions_line(checks)


def _model_server(
    model: ModelSpec,
    model_dir: Path,
    environment: Mapping[str, str],
    settings: RuntimeSettings,
    label: str,
    content_type: str | None = None,
    accept: str | None = None,
    cpus: float = 0.0,
) -> ModelServer:
    """The model's serving container, configured from this process's environment (not started)."""
    return ModelServer(
        model_dir=model_dir,
        image=model.image,
        environ=os.environ,
        sagemaker_env=environment,
        settings=settings,
        content_type=content_type,
        accept=accept,
        label=label,
        cpus=cpus,
    )


@dataclass(frozen=True)
class WorkerTemplate:
    """What every worker of a job starts with, so that a dead one can be replaced by an equal one."""

    model: ModelSpec
    environment: Mapping[str, str]
    sizing: InstanceSizing
    cache_dir: str
    content_type: str | None
    accept: str | None
    ready_timeout_s: float
    runtime: RuntimeSettings | None = None


def start_worker(template: WorkerTemplate, group: PlacementGroup, bundle_index: int) -> tuple[Any, Any]:
    """Start one worker in bundle ``bundle_index`` of ``group``: (the actor, its setup's ObjectRef).
    WorkerPool.start and the replacement of a dead worker (runner/engine/replacer.py) both start workers
    here."""
    sizing = template.sizing
    actor: Any = RemoteModelWorker.options(
        num_cpus=sizing.cpus_per_worker,
        num_gpus=sizing.gpus_per_worker,
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=bundle_index
        ),
    ).remote()
    ready = actor.setup.remote(
        template.model,
        template.environment,
        template.cache_dir,
        sizing.threads_per_worker,
        template.content_type,
        template.accept,
        template.runtime,
    )
    return actor, ready


# A plain actor: its calls run one at a time on its main thread, in the order sent. (max_concurrency > 1
# lets Ray run them out of order, so a slow payload can hold up the ones before it; an I/O concurrency
# group for ranged reads kept the order but measured more worker CPU on workload T.)
RemoteModelWorker = ray.remote(ModelWorker)
remote_probe_execution_parameters = ray.remote(num_cpus=0, max_retries=0)(probe_execution_parameters)
