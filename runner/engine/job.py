"""A transform job from request to terminal status: validate -> plan -> start workers -> feed every
object -> record the outcome. The driver only schedules; bytes flow between Ray tasks and actors.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import ray

from runner.config import ModelRuntime, RunnerConfig
from runner.contract.instances import instance_spec
from runner.contract.parameters import Resolved, model_parameters, resolve
from runner.contract.spec import (
    TransformJobSpec,
    parse_transform_job,
)
from runner.engine.calls import ray_get
from runner.engine.credentials import AwsEnvironment, aws_environment, where_nodes_read
from runner.engine.feeder import FeedSettings, ObjectResult, payload_reads, remote_warm
from runner.engine.machine import MACHINE_RESOURCE
from runner.engine.pool import WorkerPool
from runner.engine.scheduler import counters_of, feed_all, feed_groups
from runner.engine.sizing import InstanceSizing, NodeGroup, check_fits, never_fits, size_instances
from runner.engine.warm import WARM_POOLS, PoolKey, pool_key
from runner.engine.worker import WorkerTemplate, remote_probe_execution_parameters
from runner.errors import (
    Problem,
    ResourceInUseError,
    ResourceNotFoundError,
    ResumeError,
    RunnerError,
    SpecError,
    WorkerStartupError,
)
from runner.jobs.counters import JobCounters
from runner.jobs.joblog import JobLogWriter
from runner.jobs.ledger import Ledger, check_resumable, check_unchanged, model_fingerprint, still_valid
from runner.jobs.owner import owner_id
from runner.jobs.store import (
    JobRecord,
    JobStore,
    TransformJobStatus,
    failure_reason,
    in_use_message,
    job_arn,
    model_arn,
)
from runner.model.artifacts import (
    ModelSpec,
    artifact_key,
    job_environment,
    parse_create_model,
    prefetch_model,
)
from runner.model.runtime import RuntimeSettings
from runner.records.dataprocessing import processing_for
from runner.records.knobs import InputKnobs, input_knobs
from runner.records.payloads import Packing
from runner.records.plan import InputObject, plan_inputs
from runner.records.quarantine import Quarantine, quarantine_for
from runner.storage import storage_for

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WARM_FEEDERS = 2
WARM_WAIT_S = 10.0

ProgressCallback = Callable[[JobCounters], None]
# Runs ``fn(*args)`` where S3 is read for the job: here, or on a cluster's node (engine/credentials.py).
NodeRead = Callable[..., Any]


def read_here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def list_inputs(spec: TransformJobSpec) -> list[InputObject]:
    return plan_inputs(spec, storage_for(spec.transform_input.s3_uri))


@dataclass(frozen=True)
class PreparedJob:
    spec: TransformJobSpec
    model: ModelSpec
    objects: list[InputObject]
    record: JobRecord
    # Objects whose valid output a resumed job keeps (not in ``objects``, not run again).
    resumed: int = 0


def create_job(
    request: Mapping[str, Any],
    store: JobStore,
    model_request: Mapping[str, Any] | None = None,
    read: NodeRead = read_here,
) -> PreparedJob:
    """Everything CreateTransformJob checks synchronously; on success the job exists, InProgress.
    ``read`` lists the input (once the request itself is valid): here, or on a cluster's nodes."""
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
    objects = read(list_inputs, spec)
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
    if ray.is_initialized():
        return
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if joins_cluster(config):
            use_ray_token()
        _init_ray(config.ray_address or os.environ.get("RAY_ADDRESS"))
        # ray.init puts its own SIGTERM handler (which exits at once) over the caller's: give the
        # caller's back, so that `run` still stops its job cleanly on SIGTERM.
        if callable(sigterm):
            signal.signal(signal.SIGTERM, sigterm)
    except Exception as e:
        detail = _auth_failure(e)
        if detail is None:
            raise
        address = config.ray_address or os.environ.get("RAY_ADDRESS")
        raise WorkerStartupError(
            f"cannot join the Ray cluster at {address}: token authentication failed ({detail}). Set "
            "RAY_AUTH_TOKEN to the cluster's token, or RAY_AUTH_TOKEN_PATH to a file holding it "
            "(`ray get-auth-token` prints it on the head)"
        ) from None


CLIENT_CONNECT_TRIES = 3
CLIENT_RETRY_S = 2.0


def _init_ray(address: str | None) -> None:
    """ray.init; through Ray Client, tried again a few times when the client server fails to start
    this connection's server process (it does so on a busy head; Ray says to try again)."""
    tries = CLIENT_CONNECT_TRIES if address is not None and address.startswith("ray://") else 1
    for attempt in range(1, tries + 1):
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
            return
        except ConnectionError as e:  # ConnectionAbortedError: "Initialization failure from server"
            if attempt == tries or _auth_failure(e) is not None:
                raise
            log.warning("Ray Client could not connect to %s (try %d of %d): %s", address, attempt, tries, e)
            time.sleep(CLIENT_RETRY_S)


def use_ray_token() -> None:
    """Send a Ray token when joining a cluster by address and the user gave one (RAY_AUTH_TOKEN or
    RAY_AUTH_TOKEN_PATH) without setting RAY_AUTH_MODE: Ray itself turns token mode on only for
    ``auto``. Not for a token merely left in ~/.ray/auth_token: in token mode, a driver's actors on a
    cluster without token authentication never start."""
    if os.environ.get("RAY_AUTH_MODE") or not (
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    ):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _auth_failure(error: BaseException) -> str | None:
    """What Ray said of a failed token authentication (its first sentence), or None for another error."""
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen)
        if isinstance(seen, getattr(ray.exceptions, "AuthenticationError", ())) or "InvalidAuthToken" in text:
            last = text.strip().splitlines()[-1] if text.strip() else type(seen).__name__
            return last.split(". Note:")[0].split(". Ensure")[0].strip().rstrip(".")
        seen = seen.__cause__ or seen.__context__
    return None


def ray_is_own(config: RunnerConfig) -> bool:
    """True when the job runs on a Ray this process started (no ``--ray-address``, no RAY_ADDRESS,
    no cluster already running on this machine), or on this machine's Ray that ``batch-transform ray
    up`` keeps (engine/machine.py): only there are instances scaled down to fit. A Ray that was
    joined otherwise, by flag or by environment, gets the cluster rules: instances that cannot be
    placed fail at once, naming what is missing."""
    if config.ray_address is not None:
        return False
    node = getattr(ray._private.worker, "_global_node", None)  # set by ray.init in this process
    if node is not None and getattr(node, "head", False):
        return True
    return not os.environ.get("RAY_ADDRESS") and _on_machine_ray()


def _on_machine_ray() -> bool:
    """Joined the Ray ``batch-transform ray up`` started: one node, marked as such."""
    if not ray.is_initialized() or not ray.cluster_resources().get(MACHINE_RESOURCE):
        return False
    return sum(1 for n in ray.nodes() if n.get("Alive")) == 1


def joins_cluster(config: RunnerConfig) -> bool:
    """Whether this job names a Ray cluster to join (flag or RAY_ADDRESS), known before Ray starts."""
    return config.ray_address is not None or bool(os.environ.get("RAY_ADDRESS"))


def job_aws(config: RunnerConfig) -> AwsEnvironment:
    """The AWS settings this job's tasks and workers get (engine/credentials.py); Ray is up."""
    return aws_environment(ray_is_own(config), config.forward_aws_credentials)


def cluster_read(config: RunnerConfig) -> NodeRead:
    """Where a job's driver-side S3 reads run: on a named cluster, on its nodes with their own
    credentials (the driver may have none); otherwise in this process."""
    if not joins_cluster(config):
        return read_here

    def read(fn: Callable[..., Any], *args: Any) -> Any:
        ensure_ray(config)
        return where_nodes_read(job_aws(config), fn, *args)

    return read


def describe_ray(config: RunnerConfig) -> str:
    """One line for the job's notes: which Ray it runs on, which placement rules apply, and whose AWS
    credentials the nodes use."""
    if ray_is_own(config):
        node = getattr(ray._private.worker, "_global_node", None)
        which = (
            "started by this process"
            if node is not None and getattr(node, "head", False)
            else f"this machine's Ray at {ray.get_runtime_context().gcs_address} (batch-transform ray up)"
        )
        return f"Ray: {which}; instances larger than this machine are scaled down to fit"
    # The address as the user gave it (Ray Client has no GCS address of its own), else the local one.
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or ray.get_runtime_context().gcs_address
    keys = (
        "this process's AWS credentials are forwarded to them (--forward-aws-credentials)"
        if config.forward_aws_credentials
        else "each node reaches S3 with its own AWS credentials"
    )
    return (
        f"Ray: joined the cluster at {address}; instances must fit its nodes as they are (no scale-down); "
        + keys
    )


def shutdown_ray() -> None:
    """Disconnect from (or stop, when this process started it) the Ray that ``ensure_ray`` joined."""
    if ray.is_initialized():
        ray.shutdown()


def run_job(
    request: Mapping[str, Any],
    config: RunnerConfig,
    model_request: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> JobRecord:
    """Create and run a job to its end; returns the final record. Bad requests raise, nothing runs."""
    store = JobStore(config.store_path)
    job = create_job(request, store, model_request, cluster_read(config))
    return _run_to_end(job, store, config, on_progress, on_note)


def resume_job(
    name: str,
    config: RunnerConfig,
    on_progress: ProgressCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> JobRecord:
    """Run a Failed, Stopped or orphaned job again over the objects without a valid output (resume.py)."""
    store = JobStore(config.store_path)
    job, knobs = prepare_resume(name, store, on_note or log.info, cluster_read(config))
    # The first run's output knobs, whatever this command was given: the outputs must match.
    return _run_to_end(job, store, replace(config, **knobs), on_progress, on_note)


def prepare_resume(
    name: str, store: JobStore, on_note: Callable[[str], None], read: NodeRead = read_here
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
    objects = read(list_inputs, spec)
    check_unchanged(spec.name, plan, objects, read(model_fingerprint, model_request))
    valid = read(still_valid, objects, ledger.finished(spec.name))
    todo = [o for o in objects if o.uri not in valid]
    if todo:
        read(abort_uploads, spec.transform_output.s3_output_path, [o.output_uri for o in todo])
    on_note(
        f"resuming {spec.name}: {len(valid)} of {len(objects)} objects have a valid output and are kept; "
        f"{len(todo)} to run"
    )
    record = store.update_job(
        spec.name, status=TransformJobStatus.IN_PROGRESS, failure_reason=None, transform_end_time=None
    )
    return PreparedJob(spec, parse_create_model(model_request), todo, record, resumed=len(valid)), plan.knobs


def abort_uploads(output_path: str, uris: list[str]) -> None:
    """Abort the multipart uploads a killed run left for these outputs: they never become objects."""
    output_storage = storage_for(output_path)
    if hasattr(output_storage, "abort_uploads"):
        output_storage.abort_uploads(uris)


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
    except Exception as e:  # the job must still end, with a reason
        return store.update_job(
            job.spec.name,
            status=TransformJobStatus.FAILED,
            failure_reason=failure_reason_for(e),
            transform_end_time=time.time(),
        )


def failure_reason_for(error: BaseException) -> str:
    """FailureReason for a job that an exception ended: ``ClientError: …`` for an error the runner
    raises on purpose (a bad input, model or setting), ``InternalServerError: …`` for a fault of ours
    (logged with its traceback)."""
    if isinstance(error, RunnerError):
        return failure_reason(f"ClientError: {error}")
    log.error("job failed on an internal error", exc_info=error)
    return failure_reason(f"InternalServerError: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class JobSetup:
    """What a job settles before any worker starts: checks that can refuse it, and its settings."""

    knobs: InputKnobs
    quarantine: Quarantine | None
    model: ModelSpec  # with the artifacts' key read once, so that cached workers make no S3 call
    environment: Mapping[str, str]  # what the model sees (and the AWS settings workers need for S3)
    aws: AwsEnvironment  # the AWS settings that travel to the object tasks
    runtime: RuntimeSettings
    fingerprint: str


@dataclass
class StartedWorkers:
    """The job's model workers, ready, and how the job's execution parameters resolved."""

    pool: WorkerPool
    resolved: Resolved
    parameters_ignored: tuple[str, ...]  # members of the model's execution parameters left out
    runtime: RuntimeSettings
    warm: bool  # workers may be kept for the next job (RunnerConfig.warm_pool_s)
    key: PoolKey


def execute(
    job: PreparedJob,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    on_note: Callable[[str], None],
    should_stop: Callable[[], bool] | None = None,
) -> JobRecord:
    """Run a created job to its end: set up, start the workers, feed every object, record the
    outcome. ``should_stop`` (StopTransformJob) is polled while objects are fed; once true, running
    objects are cancelled (their uploads aborted) and the job ends Stopped. What the job says goes to
    its log streams too (runner/jobs/joblog.py), each line before the status it leads to."""
    joblog = JobLogWriter(store, job.spec.name, job.spec.transform_resources.instance_count)

    def note(text: str) -> None:
        on_note(text)
        joblog.job(text)

    try:
        return _execute(job, store, config, on_progress, note, should_stop, joblog)
    except KeyboardInterrupt:
        joblog.job(f"transform job {job.spec.name}: interrupted, stopping")
        raise
    except Exception as e:
        joblog.job(f"transform job {job.spec.name}: ended on {type(e).__name__}: {e}")
        raise


def _execute(
    job: PreparedJob,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    on_note: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    joblog: JobLogWriter,
) -> JobRecord:
    ensure_ray(config)
    on_note(describe_ray(config))
    setup = set_up(job, store, config, on_note)
    warming = [remote_warm.remote() for _ in range(min(len(job.objects), WARM_FEEDERS))]
    if ray_is_own(config):  # the workers share this machine's cache: fill it meanwhile
        prefetch_model(setup.model, config.model_cache_dir)
    workers = start_workers(job, setup, config, on_note)
    log_workers(joblog, workers.pool)
    park = False
    try:
        ray.wait(warming, num_returns=len(warming), timeout=WARM_WAIT_S)
        results, reads = feed(job, setup, workers, store, config, on_progress, should_stop)
        stopped = should_stop is not None and should_stop() and len(results) < len(job.objects)
        # Busy workers of a stopped job would answer only after their payloads.
        worker_stats = [] if stopped else workers.pool.stats()
        nodes = workers.pool.nodes_held()  # before shutdown removes the placement groups
        # Kept warm only when nothing went wrong: a lost or replaced worker, a failed object.
        park = (
            workers.warm
            and not stopped
            and _runtime_of(workers.pool) is ModelRuntime.HOOKS
            and all(r.ok and not r.counts.workers_replaced for r in results)
            and not any(w.lost for w in worker_stats)
        )
    finally:
        if park:
            WARM_POOLS.park(workers.key, workers.pool, config.warm_pool_s)
        else:
            workers.pool.shutdown()
    counters = replace(
        counters_of(job, results, reads=reads),
        workers=tuple(worker_stats),
        nodes=nodes,
        model_runtime=_runtime_of(workers.pool),
        execution_parameters_ignored=workers.parameters_ignored or None,
    )
    return record_outcome(job, store, results, counters, stopped, joblog)


def log_workers(joblog: JobLogWriter, pool: WorkerPool) -> None:
    """Each worker's start, in its instance's stream."""
    per_instance = max(1, len(pool.infos) // max(1, len(pool.instances)))
    for k, info in enumerate(pool.infos):
        where = f"model worker pid {info.pid} on node {(info.node_id or '?')[:12]}"
        if info.warm:
            joblog.instance(k // per_instance, f"{where}: kept warm from an earlier job")
            continue
        how = info.runtime or "?"
        if info.family:
            how += f", {info.family} defaults"
        if info.server:
            how += f", {info.server} server, log {info.server_log}"
        if info.frameworks:
            how += f", {info.frameworks}"
        load = f"{info.model_load_s:.2f}s" if info.model_load_s is not None else "?"
        joblog.instance(k // per_instance, f"{where}: model loaded in {load} ({how})")


def set_up(
    job: PreparedJob, store: JobStore, config: RunnerConfig, on_note: Callable[[str], None]
) -> JobSetup:
    """The checks that refuse a job before any worker starts (docs/contract.md §9 knobs that cannot
    work together, an unworkable quarantine), the resume ledger's plan, and the workers' settings."""
    spec, model = job.spec, job.model
    aws = job_aws(config)
    fingerprint = where_nodes_read(aws, model_fingerprint, model.request)
    if not job.resumed:
        Ledger(store).begin(spec.name, fingerprint, job.objects, config)
    knobs, knob_notes = input_knobs(
        config, spec.transform_input.content_type, spec.transform_input.split_type, processing_for(spec)
    )
    for note in knob_notes:
        on_note(note)
    quarantine = quarantine_for(config, spec)
    # Read once here, so workers that find the artifacts cached under it make no S3 call.
    model = replace(model, artifact_key=where_nodes_read(aws, artifact_key, model.model_data_url))
    # Workers fetch the model from S3 too: on a cluster they do not inherit this process's AWS settings.
    environment = {**aws.settings, **job_environment(model, spec)}
    runtime = RuntimeSettings(
        model_runtime=config.model_runtime,
        serve_command=config.serve_command,
        startup_timeout_s=config.container_startup_timeout_s,
        invocations_timeout_s=spec.model_client_config.invocations_timeout_s,
        invocations_max_retries=spec.model_client_config.invocations_max_retries,
        log_dir=str(config.job_log_dir(spec.name)),
        cwd=os.getcwd(),
        install_requirements=config.install_requirements,
        framework_versions=config.framework_versions,
        record_delay_s=config.record_delay_s,
    )
    return JobSetup(knobs, quarantine, model, environment, aws, runtime, fingerprint)


def start_workers(
    job: PreparedJob, setup: JobSetup, config: RunnerConfig, on_note: Callable[[str], None]
) -> StartedWorkers:
    """Resolve the execution parameters (asking the model when the request leaves one unset), size
    the instances for this cluster, and start their workers, or take a pool kept warm for them."""
    spec = job.spec
    cache_dir = str(config.model_cache_dir)
    warm = config.warm_pool_s > 0
    params = None
    if spec.max_concurrent_transforms is None or spec.max_payload_mb is None or spec.batch_strategy is None:
        probe_key = (setup.fingerprint, tuple(sorted(setup.environment.items())))
        known, params = WARM_POOLS.execution_parameters(probe_key) if warm else (False, None)
        if not known:
            params = ray_get(
                remote_probe_execution_parameters.remote(
                    setup.model, setup.environment, cache_dir, setup.runtime
                )
            )
            if warm:
                WARM_POOLS.remember_parameters(probe_key, params)
    answer = model_parameters(params)
    for ignored in answer.ignored:
        on_note(f"the model's execution parameters: ignored {ignored}, as SageMaker ignores it")
    resolved = resolve(spec, answer.values)
    runtime = replace(setup.runtime, chunked=resolved.max_payload_mb == 0)
    resources = spec.transform_resources
    sizing = size_instances(
        instance_spec(resources.instance_type),
        resources.instance_count,
        config.workers_per_instance or resolved.max_concurrent_transforms,
        ray.cluster_resources(),
        local=ray_is_own(config),
        allow_cpu_for_gpu=config.allow_cpu_for_gpu,
    )
    for note in sizing.notes:
        on_note(note)
    if not ray_is_own(config):
        await_room(job, resources.instance_type, resources.instance_count, sizing, config, on_note)
    template = WorkerTemplate(
        setup.model,
        setup.environment,
        sizing,
        cache_dir,
        spec.transform_input.content_type,
        spec.transform_output.accept,
        config.worker_ready_timeout_s,
        runtime,
    )
    key = pool_key(setup.fingerprint, template, resources.instance_count)
    pool = WARM_POOLS.take(key) if warm else None
    if pool is not None:
        on_note(f"model workers: kept warm from an earlier job of model {spec.model_name}")
    else:
        WARM_POOLS.release_all()  # idle workers must not hold the CPUs this job's instances need
        # A job of this process may park its pool while this one waits for room: on_wait frees it.
        pool = WorkerPool.start(template, resources.instance_count, on_wait=WARM_POOLS.release_all)
    if pool.infos:  # which runtime runs the model (in-process hooks or a serving container)
        info = pool.infos[0]
        server = f"; {info.server} server, logs in {config.job_log_dir(spec.name)}" if info.server else ""
        on_note(f"model runtime: {info.runtime} ({info.runtime_reason}){server}")
        if info.frameworks:
            on_note(f"frameworks: {info.frameworks}")
    return StartedWorkers(pool, resolved, answer.ignored, runtime, warm, key)


AUTOSCALER_WAIT_S = 600.0  # default wait for an autoscaler's nodes: cloud machines take minutes
NODES_POLL_S = 1.0


# Ray's monitor on the head (monitor.py) rewrites this report every few seconds while it runs; one
# older than this is left from a monitor that has stopped.
AUTOSCALER_STATUS_KEY = "__autoscaling_status"
AUTOSCALER_STATUS_FRESH_S = 60.0


@dataclass(frozen=True)
class Autoscaler:
    """An autoscaler running on the joined cluster, and the node types it can start: None where it
    does not publish them (Ray's own autoscaler as the cluster launcher runs it reports its status
    but not its node types' shapes)."""

    groups: list[NodeGroup] | None


def find_autoscaler() -> Autoscaler | None:
    """The cluster's autoscaler: one that publishes its node types (KubeRay's, the v2 autoscaler),
    else one whose status report is fresh (the launcher's); None where neither is seen."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a Ray without it, or Ray Client
        config = None
    if config is not None and config.node_group_configs:
        return Autoscaler(
            [
                NodeGroup(g.name, {k: float(v) for k, v in g.resources.items()}, int(g.max_count))
                for g in config.node_group_configs
            ]
        )
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(AUTOSCALER_STATUS_KEY)
        status = json.loads(raw) if raw else {}
        reported = float(status.get("time", 0.0))
    except Exception:  # a report of another shape, or Ray Client
        return None
    if time.time() - reported > AUTOSCALER_STATUS_FRESH_S:
        return None
    # Every `ray start --head` runs a monitor; without an autoscaling config its provider is read-only
    # and names each node's type after the node itself. One that can start nodes names the types of
    # its config (the launcher's, KubeRay's groups).
    mapping = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
    if not any(kind != f"node_{node}" for node, kind in mapping.items()):
        return None
    return Autoscaler(None)


def await_room(
    job: PreparedJob,
    instance_type: str,
    count: int,
    sizing: InstanceSizing,
    config: RunnerConfig,
    on_note: Callable[[str], None],
) -> None:
    """On a joined cluster: return once its nodes can hold the instances. Where they cannot yet and
    the cluster can grow (an autoscaler, or ``--wait-for-nodes``), ask for them
    (``request_resources``), say what is awaited (notes, Describe's ``x-runner.waiting_for_nodes``)
    and wait up to the deadline; a shape no node type can ever hold fails at once."""

    def alive() -> list[Mapping[str, float]]:
        return [n["Resources"] for n in ray.nodes() if n.get("Alive")]

    try:
        check_fits(instance_type, count, sizing, alive())
        return
    except WorkerStartupError as not_yet:
        autoscaler = find_autoscaler()
        wait_s = config.wait_for_nodes_s
        if wait_s is None:
            wait_s = AUTOSCALER_WAIT_S if autoscaler is not None else 0.0
        if wait_s <= 0:
            raise
        if autoscaler is not None and autoscaler.groups is not None:
            problem = never_fits(instance_type, count, sizing, autoscaler.groups)
            if problem is not None:
                raise WorkerStartupError(problem) from None
        missing = str(not_yet)
    from ray.autoscaler.sdk import request_resources

    bundles = [sizing.per_instance()] * count
    request_resources(bundles=bundles)  # an autoscaler starts nodes for them; without one, nothing
    waiting = (
        f"{count} x {instance_type} on nodes not there yet (asked the autoscaler for them)"
        if autoscaler is not None
        else f"{count} x {instance_type} on nodes not there yet (--wait-for-nodes)"
    )
    on_note(f"waiting up to {wait_s:g}s for the cluster to grow: {missing}")
    store = JobStore(config.store_path)
    store.update_job(
        job.spec.name,
        counters=JobCounters(
            objects_total=len(job.objects), waiting_for_nodes=f"{waiting}; up to {wait_s:g}s"
        ),
    )
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < wait_s:
            time.sleep(NODES_POLL_S)
            try:
                check_fits(instance_type, count, sizing, alive())
            except WorkerStartupError as still:
                missing = str(still)
                continue
            on_note(f"the cluster grew in {time.monotonic() - t0:.0f}s: its nodes can hold the instances")
            store.update_job(job.spec.name, counters=JobCounters(objects_total=len(job.objects)))
            return
    finally:
        request_resources(bundles=[])  # the placement groups hold what the job needs from here
    raise WorkerStartupError(f"waited {wait_s:g}s for nodes that never came: {missing}")


def feed(
    job: PreparedJob,
    setup: JobSetup,
    workers: StartedWorkers,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[list[ObjectResult], str]:
    """Every object through the workers; TransformStartTime is when they are ready (SageMaker bills
    from there). Also says who read the payloads' bytes (Describe's ``x-runner.payload_reads``)."""
    spec, resolved, pool = job.spec, workers.resolved, workers.pool
    store.update_job(spec.name, transform_start_time=time.time(), resolved=resolved.describe())
    limit_mb = resolved.max_payload_mb
    packing = Packing(
        split_type=spec.transform_input.split_type,
        compression=spec.transform_input.compression_type,
        strategy=resolved.batch_strategy,
        limit_bytes=limit_mb * MIB if limit_mb else None,
        limit_mb=limit_mb,
        processing=processing_for(spec),
        knobs=setup.knobs,
    )
    ranged_over_bytes, reads = payload_reads(packing, setup.quarantine is not None, config.payload_reads)
    settings = FeedSettings(
        packing=packing,
        assemble_with=spec.transform_output.assemble_with,
        output_content_type=spec.transform_output.accept or "application/octet-stream",
        kms_key_id=spec.transform_output.kms_key_id,
        max_in_flight=len(feed_groups(pool, config)[0]) * config.in_flight_per_worker,
        max_retries=spec.model_client_config.invocations_max_retries,
        replacer=pool.replacer(),
        quarantine=setup.quarantine,
        ranged_over_bytes=ranged_over_bytes,
    )
    results = feed_all(job, pool, settings, store, config, on_progress, setup.aws, should_stop, reads)
    return results, reads


def record_outcome(
    job: PreparedJob,
    store: JobStore,
    results: list[ObjectResult],
    counters: JobCounters,
    stopped: bool,
    joblog: JobLogWriter,
) -> JobRecord:
    """The job's end: Stopped, Failed with the first failed object's error, or Completed."""
    name = job.spec.name
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("%s", r.error)
    joblog.spread([_object_line(r) for r in results])
    if stopped:
        status, reason = TransformJobStatus.STOPPED, None
    elif failed:
        status, reason = (
            TransformJobStatus.FAILED,
            failure_reason(f"{failed[0].error_kind}: {failed[0].error}"),
        )
    else:
        status, reason = TransformJobStatus.COMPLETED, None
    changes: dict[str, Any] = {"failure_reason": reason} if reason else {}
    joblog.job(f"transform job {name}: {status}" + (f": {reason}" if reason else ""))
    return store.update_job(name, status=status, transform_end_time=time.time(), counters=counters, **changes)


def _object_line(r: ObjectResult) -> str:
    if not r.ok:
        return f"{r.uri}: failed: {r.error}"
    c = r.counts
    return f"{r.uri}: {c.records} records in {c.payloads} payload(s), {r.bytes_out} bytes to {r.output_uri}"


def _runtime_of(pool: WorkerPool) -> ModelRuntime | None:
    runtime = pool.infos[0].runtime if pool.infos else None
    return ModelRuntime(runtime) if runtime else None


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
