"""A transform job from request to terminal status: validate -> plan -> start workers -> feed every
object -> record the outcome. The driver only schedules; bytes flow between Ray tasks and actors.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from runner.config import RunnerConfig
from runner.container import RuntimeSettings
from runner.dataprocessing import processing_for
from runner.errors import (
    Problem,
    ResourceInUseError,
    ResourceNotFoundError,
    ResumeError,
    RunnerError,
    SpecError,
)
from runner.feeder import (
    FeedSettings,
    ObjectResult,
    RemoteProgressCounter,
    input_knobs,
    remote_run_object,
    remote_warm,
)
from runner.instances import instance_spec
from runner.model import ModelSpec, job_environment, parse_create_model
from runner.plan import InputObject, plan_inputs
from runner.pool import WorkerPool, check_fits, size_instances
from runner.quarantine import quarantine_for
from runner.resume import Ledger, check_resumable, check_unchanged, model_fingerprint, still_valid
from runner.spec import (
    DEFAULT_MAX_CONCURRENT_TRANSFORMS,
    DEFAULT_MAX_PAYLOAD_MB,
    MAX_PAYLOAD_LIMIT_MB,
    BatchStrategy,
    TransformJobSpec,
    parse_transform_job,
)
from runner.state import (
    JobRecord,
    JobStore,
    TransformJobStatus,
    in_use_message,
    job_arn,
    model_arn,
    owner_id,
)
from runner.storage import storage_for
from runner.worker import remote_probe_execution_parameters

log = logging.getLogger(__name__)

MIB = 1024 * 1024
AWS_ENV_PREFIXES = ("AWS_",)
POLL_S = 0.5
STORE_EVERY_S = 2.0
STOP_GRACE_S = 30.0  # for cancelled object tasks to abort their uploads before they are killed
WARM_FEEDERS = 2
WARM_WAIT_S = 10.0

ProgressCallback = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Resolved:
    """Request > the model's execution parameters > defaults (CONTRACT 5.1)."""

    max_concurrent_transforms: int
    max_payload_mb: int
    batch_strategy: BatchStrategy

    def describe(self) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": self.max_concurrent_transforms,
            "MaxPayloadInMB": self.max_payload_mb,
            "BatchStrategy": str(self.batch_strategy),
        }


def resolve(spec: TransformJobSpec, params: Mapping[str, Any] | None) -> Resolved:
    p = params or {}
    strategy = spec.batch_strategy
    if strategy is None and p.get("BatchStrategy"):
        text = str(p["BatchStrategy"]).replace("_", "").lower()
        strategy = BatchStrategy.SINGLE_RECORD if text == "singlerecord" else BatchStrategy.MULTI_RECORD
    resolved = Resolved(
        max_concurrent_transforms=spec.max_concurrent_transforms
        or int(p.get("MaxConcurrentTransforms") or DEFAULT_MAX_CONCURRENT_TRANSFORMS),
        max_payload_mb=spec.max_payload_mb
        if spec.max_payload_mb is not None
        else int(p.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)),
        batch_strategy=strategy or BatchStrategy.MULTI_RECORD,
    )
    mct, mb = resolved.max_concurrent_transforms, resolved.max_payload_mb
    if mb > MAX_PAYLOAD_LIMIT_MB or mct * mb > MAX_PAYLOAD_LIMIT_MB:
        raise SpecError(
            [
                Problem(
                    "maxConcurrentTransforms",
                    mct,
                    f"MaxConcurrentTransforms x MaxPayloadInMB must be at most {MAX_PAYLOAD_LIMIT_MB} after "
                    f"applying the model's execution parameters {dict(p)}; got {mct} x {mb}",
                )
            ]
        )
    return resolved


def aws_environment() -> dict[str, str]:
    """The standard AWS settings the workers need for S3, passed as task arguments (not runtime_env,
    which Ray writes to its logs)."""
    return {k: v for k, v in os.environ.items() if k.startswith(AWS_ENV_PREFIXES)}


@dataclass(frozen=True)
class PreparedJob:
    spec: TransformJobSpec
    model: ModelSpec
    objects: list[InputObject]
    record: JobRecord
    # Objects whose valid output a resumed job keeps (not in ``objects``, not run again).
    resumed: int = 0


def create_job(
    request: Mapping[str, Any], store: JobStore, model_request: Mapping[str, Any] | None = None
) -> PreparedJob:
    """Everything CreateTransformJob checks synchronously; on success the job exists, InProgress."""
    spec = parse_transform_job(request)
    if model_request is not None:
        model = parse_create_model(model_request)
        if model.name.lower() != spec.model_name.lower():
            raise SpecError(
                [
                    Problem(
                        "modelName",
                        spec.model_name,
                        f"must name the model given with --model ({model.name!r})",
                    )
                ]
            )
        store.put_model(model.name, model_request)
    else:
        stored = store.get_model(spec.model_name)
        if stored is None:
            raise SpecError(
                [
                    Problem(
                        "modelName", spec.model_name, f'Could not find model "{model_arn(spec.model_name)}".'
                    )
                ]
            )
        model = parse_create_model(stored)
    try:
        existing = store.get_job(spec.name)
    except ResourceNotFoundError:
        pass
    else:
        raise ResourceInUseError(in_use_message(existing.arn))
    objects = plan_inputs(spec, storage_for(spec.transform_input.s3_uri))
    now = time.time()
    record = JobRecord(
        name=spec.name,
        arn=job_arn(spec.name),
        status=TransformJobStatus.IN_PROGRESS,
        request=dict(spec.request),
        creation_time=now,
        last_modified_time=now,
    )
    store.create_job(record)
    return PreparedJob(spec, model, objects, record)


def ensure_ray(config: RunnerConfig) -> None:
    if not ray.is_initialized():
        ray.init(
            address=config.ray_address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )


def run_job(
    request: Mapping[str, Any],
    config: RunnerConfig,
    model_request: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> JobRecord:
    """Create and run a job to its end; returns the final record. Bad requests raise, nothing runs."""
    store = JobStore(config.store_path)
    job = create_job(request, store, model_request)
    return _run_to_end(job, store, config, on_progress, on_note)


def resume_job(
    name: str,
    config: RunnerConfig,
    on_progress: ProgressCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> JobRecord:
    """Run a Failed, Stopped or orphaned job again over the objects without a valid output (resume.py)."""
    store = JobStore(config.store_path)
    job, knobs = prepare_resume(name, store, on_note or log.info)
    # The first run's output knobs, whatever this command was given: the outputs must match.
    return _run_to_end(job, store, replace(config, **knobs), on_progress, on_note)


def prepare_resume(
    name: str, store: JobStore, on_note: Callable[[str], None]
) -> tuple[PreparedJob, dict[str, Any]]:
    """Check that ``name`` can be resumed and set it InProgress again: the objects still to run and
    the first run's output knobs. Raises ResumeError, and changes nothing, when it cannot."""
    record = store.get_job(name)
    check_resumable(store, record)
    spec = parse_transform_job(record.request)
    model_request = store.get_model(spec.model_name)
    if model_request is None:
        raise ResumeError(f"cannot resume transform job {name!r}: its model {spec.model_name!r} was deleted")
    ledger = Ledger(store)
    plan = ledger.plan(spec.name)
    if plan is None:
        raise ResumeError(
            f"cannot resume transform job {name!r}: it has no ledger (it never started feeding objects)"
        )
    objects = plan_inputs(spec, storage_for(spec.transform_input.s3_uri))
    check_unchanged(spec.name, plan, objects, model_fingerprint(model_request))
    valid = still_valid(objects, ledger.finished(spec.name))
    todo = [o for o in objects if o.uri not in valid]
    output_storage = storage_for(spec.transform_output.s3_output_path)
    if todo and hasattr(output_storage, "abort_uploads"):  # left by a killed run; never become objects
        output_storage.abort_uploads(o.output_uri for o in todo)
    on_note(
        f"resuming {spec.name}: {len(valid)} of {len(objects)} objects have a valid output and are kept; "
        f"{len(todo)} to run"
    )
    record = store.update_job(
        spec.name, status=TransformJobStatus.IN_PROGRESS, failure_reason=None, transform_end_time=None
    )
    return PreparedJob(spec, parse_create_model(model_request), todo, record, resumed=len(valid)), plan.knobs


def _run_to_end(
    job: PreparedJob,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    on_note: Callable[[str], None] | None,
) -> JobRecord:
    # Recorded so that `resume` can tell a job whose process died (kill -9) from a running one.
    store.claim_job(job.spec.name, owner_id())
    try:
        return execute(
            job, store, config, on_progress, on_note or log.info, stop_requested(store, job.spec.name)
        )
    except KeyboardInterrupt:
        store.update_job(job.spec.name, status=TransformJobStatus.STOPPED, transform_end_time=time.time())
        raise
    except RunnerError as e:
        return _fail(store, job.spec.name, f"ClientError: {e}")
    except Exception as e:  # a fault of ours: the job must still end, with a reason
        log.exception("job %s failed", job.spec.name)
        return _fail(store, job.spec.name, f"InternalServerError: {type(e).__name__}: {e}")


def _fail(store: JobStore, name: str, reason: str) -> JobRecord:
    return store.update_job(
        name, status=TransformJobStatus.FAILED, failure_reason=reason[:1024], transform_end_time=time.time()
    )


def execute(
    job: PreparedJob,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    on_note: Callable[[str], None],
    should_stop: Callable[[], bool] | None = None,
) -> JobRecord:
    """Run a created job to its end. ``should_stop`` (StopTransformJob) is polled while objects are
    fed; once true, running objects are cancelled (their uploads aborted) and the job ends Stopped."""
    spec, model = job.spec, job.model
    if not job.resumed:
        Ledger(store).begin(spec.name, model_fingerprint(model.request), job.objects, config)
    # CONTRACT 9 knobs: a combination that cannot work fails the job before workers start.
    knobs, knob_notes = input_knobs(
        config, spec.transform_input.content_type, spec.transform_input.split_type, processing_for(spec)
    )
    for note in knob_notes:
        on_note(note)
    quarantine = quarantine_for(config, spec)  # on_record_error (CONTRACT 9); refused here if unworkable
    ensure_ray(config)
    warming = [remote_warm.remote() for _ in range(min(len(job.objects), WARM_FEEDERS))]
    # Workers fetch the model from S3 too: on a cluster they do not inherit this process's AWS settings.
    environment = {**aws_environment(), **job_environment(model, spec)}
    cache_dir = str(config.model_cache_dir)
    runtime = RuntimeSettings(
        model_runtime=config.model_runtime,
        serve_command=config.serve_command,
        startup_timeout_s=config.container_startup_timeout_s,
        invocations_timeout_s=spec.model_client_config.invocations_timeout_s,
        invocations_max_retries=spec.model_client_config.invocations_max_retries,
        log_dir=str(config.job_log_dir(spec.name)),
        cwd=os.getcwd(),
        install_requirements=config.install_requirements,
    )
    params = None
    if spec.max_concurrent_transforms is None or spec.max_payload_mb is None or spec.batch_strategy is None:
        params = _unwrap(remote_probe_execution_parameters.remote(model, environment, cache_dir, runtime))
    resolved = resolve(spec, params)
    runtime = replace(runtime, chunked=resolved.max_payload_mb == 0)
    resources = spec.transform_resources
    sizing = size_instances(
        instance_spec(resources.instance_type),
        resources.instance_count,
        config.workers_per_instance or resolved.max_concurrent_transforms,
        ray.cluster_resources(),
        local=config.ray_address is None,
    )
    for note in sizing.notes:
        on_note(note)
    if config.ray_address is not None:
        alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        check_fits(resources.instance_type, resources.instance_count, sizing, alive)
    pool = WorkerPool.start(
        model,
        environment,
        sizing,
        resources.instance_count,
        cache_dir,
        spec.transform_input.content_type,
        spec.transform_output.accept,
        config.worker_ready_timeout_s,
        runtime,
    )
    model_runtime = pool.infos[0].get("runtime") if pool.infos else None
    try:
        if pool.infos:  # which runtime ran (in-process hooks or a serving container), for the job log
            info = pool.infos[0]
            server = (
                f"; {info['server']} server, logs in {config.job_log_dir(spec.name)}"
                if "server" in info
                else ""
            )
            on_note(f"model runtime: {model_runtime} ({info.get('runtime_reason')}){server}")
        ray.wait(warming, num_returns=len(warming), timeout=WARM_WAIT_S)
        store.update_job(spec.name, transform_start_time=time.time(), resolved=resolved.describe())
        limit_mb = resolved.max_payload_mb
        settings = FeedSettings(
            split_type=spec.transform_input.split_type,
            compression=spec.transform_input.compression_type,
            strategy=resolved.batch_strategy,
            limit_bytes=limit_mb * MIB if limit_mb else None,
            limit_mb=limit_mb,
            assemble_with=spec.transform_output.assemble_with,
            output_content_type=spec.transform_output.accept or "application/octet-stream",
            kms_key_id=spec.transform_output.kms_key_id,
            max_in_flight=len(feed_groups(pool, config)[0]) * config.in_flight_per_worker,
            processing=processing_for(spec),
            max_retries=spec.model_client_config.invocations_max_retries,
            knobs=knobs,
            replacer=pool.replacer(),
            quarantine=quarantine,
        )
        results = _feed_all(job, pool, settings, store, config, on_progress, should_stop)
        stopped = should_stop is not None and should_stop() and len(results) < len(job.objects)
        worker_stats = [] if stopped else pool.stats()  # busy workers would answer after their payloads
    finally:
        pool.shutdown()
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("%s", r.error)
    counters = _counters(job, results)
    counters["workers"] = worker_stats
    counters["model_runtime"] = model_runtime
    if stopped:
        return store.update_job(
            spec.name, status=TransformJobStatus.STOPPED, transform_end_time=time.time(), counters=counters
        )
    if failed:
        first = failed[0]
        return store.update_job(
            spec.name,
            status=TransformJobStatus.FAILED,
            failure_reason=f"{first.error_kind}: {first.error}"[:1024],
            transform_end_time=time.time(),
            counters=counters,
        )
    return store.update_job(
        spec.name, status=TransformJobStatus.COMPLETED, transform_end_time=time.time(), counters=counters
    )


def _unwrap(ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        raise (e.cause if e.cause is not None else e) from None


def _counters(
    job: PreparedJob, results: list[ObjectResult], live: Mapping[str, int] | None = None
) -> dict[str, Any]:
    done = [r for r in results if r.ok]
    out: dict[str, Any] = {
        "objects_total": len(job.objects) + job.resumed,
        "objects_done": len(done) + job.resumed,
        "objects_failed": len(results) - len(done),
        "records": sum(r.records for r in results),
        "payloads": sum(r.payloads for r in results),
        "bytes_in": sum(r.bytes_in for r in results),
        "bytes_out": sum(r.bytes_out for r in results),
        "payloads_retried": sum(r.payloads_retried for r in results),
        "workers_replaced": sum(r.workers_replaced for r in results),
        "records_quarantined": sum(r.records_quarantined for r in results),
    }
    if live:
        for k in ("records", "payloads", "bytes_in", "payloads_retried", "workers_replaced"):
            out[k] = max(out[k], live.get(k, 0))
    if job.resumed:
        out["objects_resumed"] = job.resumed
    feeders: dict[str, int] = {}
    for r in results:
        if r.node_id:
            feeders[r.node_id] = feeders.get(r.node_id, 0) + 1
    if feeders:
        out["objects_by_node"] = feeders
    firsts = [r.first_output_s for r in results if r.first_output_s is not None]
    if firsts:
        out["first_output_s"] = min(firsts)
    # Where the feeders' time went, summed over objects (they overlap with the workers' time).
    feeder: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            feeder[k] = feeder.get(k, 0.0) + v
    if feeder:
        out["feeder_s"] = {k: round(v, 3) for k, v in feeder.items()}
    return out


def _cancel_gracefully(running: Mapping[Any, int]) -> None:
    """A KeyboardInterrupt in each object task: its multipart upload is aborted on the way out."""
    for ref in running:
        ray.cancel(ref)
    if running:
        ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S)


def stop_requested(store: JobStore, name: str, every_s: float = 1.0) -> Callable[[], bool]:
    """True once the job is Stopping in the store (``batch-transform stop``); read at most every_s."""
    state = {"at": 0.0, "stop": False}

    def check() -> bool:
        now = time.monotonic()
        if not state["stop"] and now - state["at"] >= every_s:
            state["at"] = now
            state["stop"] = store.get_job(name).status is TransformJobStatus.STOPPING
        return bool(state["stop"])

    return check


def feed_groups(pool: WorkerPool, config: RunnerConfig) -> list[list[Any]]:
    """The workers an object's payloads may go to: its instance's (SageMaker's way), or with
    object_parallelism=cluster every worker of the job, so one big object can use the whole cluster."""
    if config.object_parallelism == "cluster":
        return [[w for workers in pool.instances for w in workers]]
    return [list(workers) for workers in pool.instances]


def instance_nodes(pool: WorkerPool) -> list[str | None]:
    """The node each instance's placement group landed on (from its first worker's info)."""
    nodes, at = [], 0
    for workers in pool.instances:
        info = pool.infos[at] if at < len(pool.infos) else {}
        nodes.append(info.get("node_id"))
        at += len(workers)
    return nodes


def _feed_all(
    job: PreparedJob,
    pool: WorkerPool,
    settings: FeedSettings,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ObjectResult]:
    """Objects go to instances as instances free up, a few at a time per instance."""
    aws_env = aws_environment()
    ledger = Ledger(store)
    by_uri = {o.uri: o for o in job.objects}
    finished: list[tuple[InputObject, str]] = []  # for the ledger, written every STORE_EVERY_S
    progress: Any = RemoteProgressCounter.remote()
    queue = deque(job.objects)
    running: dict[Any, int] = {}
    groups = feed_groups(pool, config)
    nodes = instance_nodes(pool)
    objects_per_group = config.objects_in_flight_per_instance * len(pool.instances) // len(groups)
    per_instance = [0] * len(groups)
    started = [0] * len(groups)  # objects started per group: rotates their first worker
    results: list[ObjectResult] = []
    last_store = time.monotonic()
    try:
        while queue or running:
            if should_stop is not None and should_stop():
                _cancel_gracefully(running)
                break
            for i, workers in enumerate(groups):
                while queue and per_instance[i] < objects_per_group:
                    # The object's task (S3 read, split, upload) runs beside its workers, not on the
                    # driver's node: its instance's node, or in cluster mode each instance's in turn.
                    home = nodes[i] if len(groups) == len(nodes) else nodes[started[i] % len(nodes)]
                    task = (
                        remote_run_object.options(
                            scheduling_strategy=NodeAffinitySchedulingStrategy(home, soft=True)
                        )
                        if home
                        else remote_run_object
                    )
                    ref = task.remote(queue.popleft(), settings, workers, progress, aws_env, started[i])
                    started[i] += 1
                    running[ref] = i
                    per_instance[i] += 1
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in done:
                per_instance[running.pop(ref)] -= 1
                result: ObjectResult = ray.get(ref)
                results.append(result)
                if result.ok:  # the ledger `resume` reads; the output's ETag proves it is still ours
                    finished.append((by_uri[result.uri], result.output_etag))
            if on_progress is not None or time.monotonic() - last_store >= STORE_EVERY_S:
                counters = _counters(job, results, ray.get(progress.snapshot.remote()))
                if on_progress is not None:
                    on_progress(counters)
                if time.monotonic() - last_store >= STORE_EVERY_S:
                    store.update_job(job.spec.name, counters=counters)
                    ledger.record(job.spec.name, finished)
                    finished.clear()
                    last_store = time.monotonic()
    except KeyboardInterrupt:  # Ctrl-C: stop like StopTransformJob, then let it propagate
        _cancel_gracefully(running)
        raise
    finally:
        ledger.record(job.spec.name, finished)  # a killed driver loses at most STORE_EVERY_S of them
        ray.kill(progress)
        for ref in running:
            ray.cancel(ref, force=True)
    return results
