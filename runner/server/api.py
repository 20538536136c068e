"""A SageMaker-compatible control plane: the model and transform-job operations over AWS JSON 1.1.

Requests come exactly as botocore sends them (``POST /``, ``X-Amz-Target: SageMaker.<Operation>``,
``Content-Type: application/x-amz-json-1.1``), each SigV4-verified (``runner.server.sigv4``) against the
credentials the server was started with, by the HTTP front end in ``runner/server/http.py``. Bodies are
validated by the same code as the CLI's (``parse_transform_job``, ``parse_create_model``, and
botocore's shapes for the other operations); errors come back as AWS sends them: HTTP 400,
``{"__type": "<Code>", "message": "<text>"}``.

CreateTransformJob checks the request synchronously (``create_job``), then runs the job in a thread
of this process (Ray is started once, on the first job). StopTransformJob sets the job's stop flag:
``execute`` cancels its object tasks, whose multipart uploads are aborted, and the job ends Stopped.
Jobs and models live in the CLI's SQLite store; jobs a previous server left running are marked
Failed when the server starts. ``fault`` (``serve --fault MODE``, runner/server/faults.py) makes the
server play an unavailable SageMaker, for the tests of ``run --prefer sagemaker``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from runner.config import RunnerConfig
from runner.contract.shapes import validate_request
from runner.engine.job import (
    NodeRead,
    PreparedJob,
    cluster_read,
    create_job,
    ensure_ray,
    execute,
    failure_reason_for,
    prepare_resume,
    read_here,
    shutdown_ray,
)
from runner.errors import (
    Problem,
    ResourceInUseError,
    ResourceNotFoundError,
    ResumeError,
    SpecError,
)
from runner.jobs.owner import owner_alive, owner_id
from runner.jobs.store import (
    JobRecord,
    JobStore,
    ListQuery,
    SortPosition,
    TransformJobStatus,
    failure_reason,
    model_arn,
)
from runner.model.artifacts import parse_create_model
from runner.server.faults import FaultMode, SlowSageMaker, injected_error, starts_jobs

log = logging.getLogger(__name__)

TARGET_PREFIX = "SageMaker."
DEFAULT_MAX_RESULTS = 10
STOP_ON_EXIT_S = 30.0
NOT_FOUND = "Requested resource not found."
RESTART_REASON = (
    "InternalServerError: the server restarted while the job was running; outputs of objects that were "
    "not finished were not written. Resume it (batch-transform resume NAME, or ResumeTransformJob) to run "
    "only the objects without an output."
)
UNFINISHED = (TransformJobStatus.IN_PROGRESS, TransformJobStatus.STOPPING)


class ApiError(Exception):
    """An error answer: AWS's code, its text, the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code, self.message, self.status = code, message, status
        super().__init__(f"{code}: {message}")


def _validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def _model_not_found(name: str) -> ApiError:
    return _validation(f'Could not find model "{model_arn(name)}".')


class ControlPlane:
    """The operations, apart from HTTP: ``call("DescribeTransformJob", body) -> response``."""

    def __init__(
        self, config: RunnerConfig, fault: FaultMode | None = None, slow: SlowSageMaker | None = None
    ) -> None:
        self.slow = slow or SlowSageMaker()  # plays a slow SageMaker (runner/server/faults.py)
        self.config = replace(config, record_delay_s=self.slow.record_delay_s) if slow else config
        self.fault = fault  # plays an unavailable SageMaker (runner/server/faults.py); None in service
        self.store = JobStore(config.store_path)
        self.owner = owner_id()
        self._lock = threading.RLock()  # resume checks and starts a job under one hold
        # Ray's processes die with the thread that started them (PR_SET_PDEATHSIG): start Ray on a
        # thread that lives as long as the server, not on a job's.
        self._ray_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-init")
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.operations: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "DeleteModel": self.delete_model,
            "ListModels": self.list_models,
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
            # The runner's own (no AWS operation, so botocore has no method for it): see resume.py.
            "ResumeTransformJob": self.resume_transform_job,
        }

    def recover(self) -> list[str]:
        """Mark Failed the jobs a server that is gone left InProgress / Stopping; returns their names."""
        failed = []
        for record, owner in self.store.unfinished_owned_jobs():
            if owner != self.owner and owner_alive(owner):
                continue
            self.store.update_job_if(
                record.name,
                UNFINISHED,
                status=TransformJobStatus.FAILED,
                failure_reason=RESTART_REASON,
                transform_end_time=time.time(),
            )
            failed.append(record.name)
        return failed

    def call(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise ApiError("UnknownOperationException", f"Unknown operation {TARGET_PREFIX}{operation}.")
        injected = injected_error(self.fault, operation)
        if injected is not None:
            raise ApiError(injected.code, injected.message, injected.status)
        try:
            if operation not in ("CreateModel", "CreateTransformJob", "ResumeTransformJob"):  # own checks
                problems = validate_request(operation, body)
                if problems:
                    raise SpecError(problems)
            return handler(body)
        except SpecError as e:
            raise _validation(str(e)) from e
        except ResourceInUseError as e:
            raise ApiError("ResourceInUse", str(e)) from e
        except ResourceNotFoundError as e:
            raise _validation(NOT_FOUND) from e
        except ResumeError as e:
            raise _validation(str(e)) from e

    # Models

    def create_model(self, body: Mapping[str, Any]) -> dict[str, Any]:
        model = parse_create_model(body)
        try:
            entry = self.store.create_model(model.name, body)
        except ResourceInUseError as e:  # AWS answers a ValidationException here
            raise _validation(str(e)) from e
        return {"ModelArn": entry.arn}

    def describe_model(self, body: Mapping[str, Any]) -> dict[str, Any]:
        entry = self.store.model_entry(body["ModelName"])
        if entry is None:
            raise _model_not_found(body["ModelName"])
        keep = ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn")
        out = {
            k: entry.request[k] for k in (*keep, "VpcConfig", "EnableNetworkIsolation") if k in entry.request
        }
        return {"ModelName": entry.name, **out, "CreationTime": entry.creation_time, "ModelArn": entry.arn}

    def delete_model(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if not self.store.delete_model(body["ModelName"]):
            raise _model_not_found(body["ModelName"])
        return {}

    def list_models(self, body: Mapping[str, Any]) -> dict[str, Any]:
        query = _list_query(body)
        entries, after = self.store.query_models(query)
        models = [{"ModelName": e.name, "ModelArn": e.arn, "CreationTime": e.creation_time} for e in entries]
        return {"Models": models, **_next_token(query, after)}

    # Transform jobs

    def create_transform_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        job = create_job(body, self.store, read=self._cluster_read())
        name = job.spec.name
        self.store.claim_job(name, self.owner)
        if not starts_jobs(self.fault):
            return {"TransformJobArn": job.record.arn}
        self._start(job, self.config, self.slow.provisioning_delay_s)
        return {"TransformJobArn": job.record.arn}

    def resume_transform_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run a Failed, Stopped or orphaned job again over its objects without a valid output."""
        name = body.get("TransformJobName")
        if not isinstance(name, str) or not name:
            raise _validation("TransformJobName: a transform job name is required")
        with self._lock:
            if name.lower() in self._threads:
                raise _validation(f"transform job {name!r} is running on this server")
            job, knobs = prepare_resume(name, self.store, log.info, self._cluster_read())
            self.store.claim_job(job.spec.name, self.owner)
            self._start(job, replace(self.config, **knobs))
        return {"TransformJobArn": job.record.arn}

    def _cluster_read(self) -> NodeRead:
        """Where a job's S3 reads run (on a joined cluster, its nodes), with Ray joined on the thread
        that lives as long as the server."""
        read = cluster_read(self.config)
        if read is read_here:
            return read

        def on_ray_thread(fn: Callable[..., Any], *args: Any) -> Any:
            self._ray_thread.submit(ensure_ray, self.config).result()
            return read(fn, *args)

        return on_ray_thread

    def _start(self, job: PreparedJob, config: RunnerConfig, provisioning_s: float = 0.0) -> None:
        name = job.spec.name
        stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(job, stop, config, provisioning_s), name=f"job-{name}", daemon=True
        )
        with self._lock:
            self._stops[name.lower()] = stop
            self._threads[name.lower()] = thread
        thread.start()

    def _run(
        self, job: PreparedJob, stop: threading.Event, config: RunnerConfig, provisioning_s: float = 0.0
    ) -> None:
        name = job.spec.name
        try:
            if stop.wait(provisioning_s):  # stopped while its instances were still being "provisioned"
                raise RuntimeError("stopped before the instances started")
            self._ray_thread.submit(ensure_ray, self.config).result()
            record = execute(job, self.store, config, None, log.info, should_stop=stop.is_set)
        except Exception as e:  # the job must still end, with a reason
            if stop.is_set():
                record = self._end(name, TransformJobStatus.STOPPED)
            else:
                record = self._end(name, TransformJobStatus.FAILED, failure_reason_for(e))
        finally:
            with self._lock:
                self._stops.pop(name.lower(), None)
                self._threads.pop(name.lower(), None)
        log.info("transform job %s: %s", name, record.status)

    def _end(self, name: str, status: TransformJobStatus, reason: str | None = None) -> JobRecord:
        return self.store.update_job_if(
            name,
            UNFINISHED,
            status=status,
            failure_reason=failure_reason(reason) if reason else None,
            transform_end_time=time.time(),
        )

    def describe_transform_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.store.get_job(body["TransformJobName"]).describe()

    def list_transform_jobs(self, body: Mapping[str, Any]) -> dict[str, Any]:
        query = _list_query(body)
        records, after = self.store.query_jobs(query)
        return {"TransformJobSummaries": [r.summary() for r in records], **_next_token(query, after)}

    def stop_transform_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["TransformJobName"]
        record = self.store.update_job_if(
            name, (TransformJobStatus.IN_PROGRESS,), status=TransformJobStatus.STOPPING
        )
        if record.status.is_terminal():
            raise _validation(
                f"The request was rejected because the transform job is in status {record.status}."
            )
        with self._lock:
            stop = self._stops.get(name.lower())
        if stop is not None:
            stop.set()
        elif not starts_jobs(self.fault):  # a job that never started has nothing to cancel
            self._end(name, TransformJobStatus.STOPPED)
        return {}

    def shutdown(self, grace_s: float = STOP_ON_EXIT_S) -> None:
        """Stop this server's running jobs (they end Stopped) and wait for them a while."""
        with self._lock:
            running = list(self._stops)
            threads = list(self._threads.values())
        for key in running:
            with contextlib.suppress(ApiError, ResourceNotFoundError):
                self.stop_transform_job({"TransformJobName": key})
        deadline = time.monotonic() + grace_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._ray_thread.submit(shutdown_ray).result()
        self._ray_thread.shutdown()


# List calls: filters, order, opaque page tokens.


def _epoch(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SpecError([Problem(field, value, "must be a timestamp (epoch seconds or ISO 8601)")]) from None


def _list_query(body: Mapping[str, Any]) -> ListQuery:
    def when(member: str) -> float | None:
        value = body.get(member)
        return None if value is None else _epoch(value, member[:1].lower() + member[1:])

    query = ListQuery(
        name_contains=body.get("NameContains") or None,
        status_equals=body.get("StatusEquals") or None,
        creation_time_after=when("CreationTimeAfter"),
        creation_time_before=when("CreationTimeBefore"),
        last_modified_time_after=when("LastModifiedTimeAfter"),
        last_modified_time_before=when("LastModifiedTimeBefore"),
        sort_by=body.get("SortBy") or "CreationTime",
        descending=(body.get("SortOrder") or "Descending") == "Descending",
        limit=int(body.get("MaxResults") or DEFAULT_MAX_RESULTS),
    )
    token = body.get("NextToken")
    return replace(query, after=_decode_token(token, query)) if token else query


def _token_scope(query: ListQuery) -> str:
    return f"{query.sort_by}:{'D' if query.descending else 'A'}"


def _next_token(query: ListQuery, after: SortPosition | None) -> dict[str, str]:
    if after is None:
        return {}
    raw = json.dumps({"s": _token_scope(query), "k": list(after)}, separators=(",", ":"))
    return {"NextToken": base64.urlsafe_b64encode(raw.encode()).decode()}


def _decode_token(token: str, query: ListQuery) -> SortPosition:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        value, name_key = data["k"]
        if data["s"] != _token_scope(query) or not isinstance(name_key, str):
            raise ValueError("token of another listing")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("bad position")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _validation(
            "Invalid pagination token: NextToken must be a token returned by this call with the same "
            "SortBy and SortOrder."
        ) from None
    return (value, name_key)
