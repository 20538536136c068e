"""``run --prefer sagemaker``: run the job on SageMaker, or on Ray when SageMaker is unavailable.

The request goes to SageMaker unchanged through boto3 (the standard AWS configuration: credentials,
region, ``AWS_ENDPOINT_URL_SAGEMAKER``; or ``--sagemaker-endpoint``): CreateModel when ``--model`` is
given (a model of that name that already exists is used as it is), CreateTransformJob, then
DescribeTransformJob until the job ends. Every call uses botocore's ``standard`` retry mode with
``MAX_ATTEMPTS`` tries and a short connect / read timeout (``--sagemaker-timeout``), so an outage
shows in seconds. Before anything is sent, the request is checked as ``run`` checks it.

SageMaker is *unavailable*, and the same request runs on Ray (same output keys), when:

- the endpoint cannot be reached or does not answer: connection refused or reset, connect or read
  timeout (botocore's ``ConnectionError`` / ``HTTPClientError``; an ``SSLError`` is a setup problem);
- a throttling error (``ThrottlingException`` and kin) outlives the retries;
- ``ResourceLimitExceeded``: the account has no instances to give;
- a 5xx answer (``InternalFailure``, ``ServiceUnavailable``, ...) outlives the retries;
- the job was accepted but has not started (no ``TransformStartTime``) within
  ``--sagemaker-start-deadline`` seconds. It is stopped (StopTransformJob) and the fallback waits for
  SageMaker to report it Stopped, so that two engines never write the same output; if Stopped is not
  confirmed within ``STOP_WAIT_S``, nothing runs on Ray and the run ends with an error naming the job.
  A job that has started is SageMaker's to finish: there is no deadline on running.

These are not, and are reported as they are, with nothing run on Ray:

- ``ValidationException`` (the request is wrong; Ray would refuse it too) and ``ResourceInUse`` (the
  job name is taken): exit 2;
- ``AccessDenied*``, unknown keys, signature errors, missing credentials or region, TLS errors: a
  configuration problem the user must see: exit 3;
- a job that ran and ended Failed (its FailureReason is printed; running it elsewhere would hide a
  real model or data error), or Stopped by someone else: exit 1.

A CreateTransformJob that timed out or got a 5xx other than 503 may have created the job all the
same, so the job is looked up: found, it is followed as if the call had succeeded; not found, the run
falls back; when the look-up fails too, the run falls back and names the SageMaker job to check.
The run prints ``engine: sagemaker (job ARN …)`` or ``engine: ray (fallback: <reason>)``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

from runner.config import RunnerConfig
from runner.contract.spec import parse_transform_job
from runner.errors import JobError, Problem, ResourceInUseError, ResourceNotFoundError, RunnerError, SpecError
from runner.jobs.store import JobStore, TransformJobStatus, in_use_message
from runner.model.artifacts import parse_create_model

DEFAULT_START_DEADLINE_S = 900.0  # SageMaker usually starts a transform job's instances in 4-8 min
DEFAULT_CALL_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 3
STOP_WAIT_S = 300.0
LOST_CONTACT_S = 300.0  # a started job's Describe may fail this long before the run gives up
POLL_FIRST_S = 0.5  # doubled after each Describe, up to POLL_MAX_S
POLL_MAX_S = 15.0
DEFAULT_REGION = "us-east-1"
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
LIMIT_CODES = frozenset({"ResourceLimitExceeded"})
SERVICE_UNAVAILABLE = 503  # refused before any work: the only 5xx that cannot have created the job
# The CLI flags (an engine knob is not an AWS request field) that SageMaker cannot honour.
RUNNER_ONLY_FLAGS = {
    "csv_header": "--csv-header",
    "csv_header_in_output": "--csv-header-in-output",
    "csv_quoted_newlines": "--csv-quoted-newlines",
    "split_parquet_row_groups": "--split-parquet-row-groups",
}

Note = Callable[[str], None]


@dataclass(frozen=True)
class SageMakerSettings:
    endpoint_url: str | None = None  # None: boto3's own (AWS_ENDPOINT_URL_SAGEMAKER, else AWS's)
    start_deadline_s: float = DEFAULT_START_DEADLINE_S
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    max_attempts: int = MAX_ATTEMPTS
    stop_wait_s: float = STOP_WAIT_S

    def describe_hint(self, name: str) -> str:
        if self.endpoint_url:
            return f"batch-transform describe {name} --endpoint-url {self.endpoint_url}"
        return f"aws sagemaker describe-transform-job --transform-job-name {name}"


def settings_for(
    prefer: str, endpoint_url: str | None, start_deadline_s: float | None, call_timeout_s: float | None
) -> SageMakerSettings | None:
    """The ``run`` flags as settings; None for ``--prefer ray``. Flags that would do nothing are errors."""
    flags = {
        "--sagemaker-endpoint": endpoint_url,
        "--sagemaker-start-deadline": start_deadline_s,
        "--sagemaker-timeout": call_timeout_s,
    }
    if prefer != "sagemaker":
        unused = [
            Problem(f, v, "only applies with --prefer sagemaker") for f, v in flags.items() if v is not None
        ]
        if unused:
            raise SpecError(unused)
        return None
    bad = [
        Problem(f, v, "must be a positive number of seconds")
        for f, v in list(flags.items())[1:]
        if v is not None and not (isinstance(v, int | float) and v > 0)
    ]
    if bad:
        raise SpecError(bad)
    return SageMakerSettings(
        endpoint_url=endpoint_url,
        start_deadline_s=start_deadline_s or DEFAULT_START_DEADLINE_S,
        call_timeout_s=call_timeout_s or DEFAULT_CALL_TIMEOUT_S,
    )


@dataclass(frozen=True)
class SageMakerRun:
    """SageMaker ran the job to its end: DescribeTransformJob's last answer."""

    described: Mapping[str, Any]

    @property
    def completed(self) -> bool:
        return self.described["TransformJobStatus"] == TransformJobStatus.COMPLETED

    def summary(self) -> list[str]:
        d = self.described
        lines = [f"Transform job {d['TransformJobName']}: {d['TransformJobStatus']}"]
        if self.completed:
            lines.append(f"Output: {d['TransformOutput']['S3OutputPath'].rstrip('/')}/<input key>.out")
        if d.get("FailureReason"):
            lines.append(f"FailureReason: {d['FailureReason']}")
        lines.append(f"engine: sagemaker (job ARN {d['TransformJobArn']})")
        return lines


@dataclass(frozen=True)
class Fallback:
    """SageMaker is unavailable: the job runs on Ray. ``reason`` says why (never a credential)."""

    reason: str

    @property
    def engine_line(self) -> str:
        return f"engine: ray (fallback: {self.reason})"


class _Unavailable(Exception):
    """A call SageMaker could not serve. ``maybe_done``: the request may have been acted on."""

    def __init__(self, reason: str, maybe_done: bool) -> None:
        self.reason, self.maybe_done = reason, maybe_done
        super().__init__(reason)


def run_on_sagemaker(
    request: Mapping[str, Any],
    model_request: Mapping[str, Any] | None,
    config: RunnerConfig,
    settings: SageMakerSettings,
    note: Note,
) -> SageMakerRun | Fallback:
    """Run the job on SageMaker to its end, or say why it must run on Ray (module docstring)."""
    name = _check_locally(request, model_request, config)
    client = sagemaker_client(settings)
    try:
        if model_request is not None:
            _create_model(client, model_request, note)
        _create_job(client, request, name, settings, note)
    except _Unavailable as e:
        note(f"SageMaker is unavailable ({e.reason}): running the job on Ray")
        return Fallback(e.reason)
    return _follow(client, name, settings, note)


def describe_on_sagemaker(name: str, settings: SageMakerSettings) -> dict[str, Any]:
    """DescribeTransformJob of a job on SageMaker; an outage or a refusal is a RunnerError naming it."""
    try:
        return _call(sagemaker_client(settings), "DescribeTransformJob", {"TransformJobName": name})
    except _Unavailable as e:
        raise RunnerError(f"SageMaker is unavailable: {e.reason}") from None
    except JobError as e:  # SageMaker's "Requested resource not found." names no job
        raise JobError(f"{e} (transform job {name!r})") from None


def sagemaker_client(settings: SageMakerSettings) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    return session.client(
        "sagemaker",
        endpoint_url=settings.endpoint_url,
        region_name=session.region_name or DEFAULT_REGION,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.call_timeout_s,
            read_timeout=settings.call_timeout_s,
        ),
    )


def _check_locally(
    request: Mapping[str, Any], model_request: Mapping[str, Any] | None, config: RunnerConfig
) -> str:
    """What ``run`` would refuse is refused before SageMaker sees it; returns the job name."""
    spec = parse_transform_job(request)
    problems = []
    if model_request is not None:
        model = parse_create_model(model_request)
        if model.name.lower() != spec.model_name.lower():
            problems.append(
                Problem(
                    "modelName", spec.model_name, f"must name the model given with --model ({model.name!r})"
                )
            )
    defaults = RunnerConfig()
    for field, flag in RUNNER_ONLY_FLAGS.items():
        value = getattr(config, field)
        if value != getattr(defaults, field):
            problems.append(
                Problem(
                    flag,
                    value,
                    "is a runner-only option SageMaker cannot honour; not with --prefer sagemaker",
                )
            )
    if problems:
        raise SpecError(problems)
    try:  # the fallback runs the job in the local store: its name must be free there too
        existing = JobStore(config.store_path).get_job(spec.name)
    except ResourceNotFoundError:
        return spec.name
    raise ResourceInUseError(
        f"{in_use_message(existing.arn)} in the local job store, where a fallback to Ray would run it; "
        "choose another --job-name"
    )


def _call(client: Any, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One SageMaker operation: its answer, ``_Unavailable``, or the refusal as a RunnerError."""
    method = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
    try:
        response: dict[str, Any] = getattr(client, method)(**params)
    except ClientError as e:
        error, meta = e.response.get("Error", {}), e.response.get("ResponseMetadata", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        status, tries = int(meta.get("HTTPStatusCode") or 0), int(meta.get("RetryAttempts") or 0) + 1
        if code in THROTTLING_CODES or code in LIMIT_CODES or status >= 500:
            http = f" (HTTP {status})" if status >= 500 else ""
            after = f" after {tries} attempts" if tries > 1 else ""
            raise _Unavailable(
                f"{operation}: {code}{http}{after}: {message}",
                maybe_done=status >= 500 and status != SERVICE_UNAVAILABLE,
            ) from None
        raise _refused(operation, code, message) from None
    except (BotoConnectionError, HTTPClientError) as e:
        if isinstance(e, SSLError):
            raise RunnerError(f"SageMaker {operation}: {e}") from None
        # A connection that failed before the request was sent cannot have created anything.
        raise _Unavailable(f"{operation}: {e}", maybe_done=isinstance(e, HTTPClientError)) from None
    except BotoCoreError as e:  # no credentials or region, a parameter boto3 refuses: setup problems
        raise RunnerError(f"SageMaker {operation}: {e}") from None
    response.pop("ResponseMetadata", None)
    return response


def _refused(operation: str, code: str, message: str) -> RunnerError:
    if code == "ValidationException":
        return JobError(f"SageMaker {operation}: {message}")  # the CLI prints it as ValidationException
    if code in ("ResourceInUse", "ResourceInUseException"):
        return ResourceInUseError(f"SageMaker {operation}: {message}")
    return RunnerError(f"SageMaker {operation} refused: {code}: {message}")


def _create_model(client: Any, model_request: Mapping[str, Any], note: Note) -> None:
    try:
        _call(client, "CreateModel", model_request)
    except JobError as e:  # SageMaker answers a ValidationException for an existing name
        if not isinstance(e, ResourceInUseError) and "already exist" not in str(e):
            raise
        note(f"model {model_request['ModelName']} already exists on SageMaker: the job uses it as it is")


def _create_job(
    client: Any, request: Mapping[str, Any], name: str, settings: SageMakerSettings, note: Note
) -> None:
    try:
        _call(client, "CreateTransformJob", request)
        return
    except _Unavailable as e:
        if not e.maybe_done:
            raise
        failed = e
    try:  # the call may have created the job before it failed: look
        _call(client, "DescribeTransformJob", {"TransformJobName": name})
    except JobError:  # ValidationException: no such job
        raise failed from None
    except _Unavailable:
        hint = settings.describe_hint(name)
        note(
            f"SageMaker could not say whether it created transform job {name}; if `{hint}` shows it, stop it"
        )
        raise failed from None
    note(f"CreateTransformJob failed ({failed.reason}), but SageMaker has transform job {name}: following it")


def _follow(client: Any, name: str, settings: SageMakerSettings, note: Note) -> SageMakerRun | Fallback:
    """Describe until the job ends; a job not started by the deadline is stopped, then falls back."""
    created = contact = time.monotonic()
    started = False
    delay = POLL_FIRST_S
    while True:
        try:
            described = _call(client, "DescribeTransformJob", {"TransformJobName": name})
        except _Unavailable as e:
            if started and time.monotonic() - contact > LOST_CONTACT_S:
                raise RunnerError(
                    f"SageMaker has not answered for {LOST_CONTACT_S:g} s ({e.reason}) while transform job "
                    f"{name} was running there; it may still be running: `{settings.describe_hint(name)}`"
                ) from None
        else:
            contact = time.monotonic()
            if TransformJobStatus(described["TransformJobStatus"]).is_terminal():
                return SageMakerRun(described)
            if not started and "TransformStartTime" in described:
                started = True
                note(f"transform job {name} started on SageMaker")
        waited = time.monotonic() - created
        if not started and waited >= settings.start_deadline_s:
            return _stop_then_fall_back(client, name, settings, note)
        time.sleep(delay if started else max(0.0, min(delay, settings.start_deadline_s - waited)))
        delay = min(delay * 2, POLL_MAX_S)


def _stop_then_fall_back(
    client: Any, name: str, settings: SageMakerSettings, note: Note
) -> SageMakerRun | Fallback:
    deadline = settings.start_deadline_s
    note(f"transform job {name} did not start on SageMaker within {deadline:g} s: stopping it there")
    give_up = time.monotonic() + settings.stop_wait_s
    stop_sent = False
    last = "no answer yet"
    delay = POLL_FIRST_S
    while True:
        try:
            if not stop_sent:
                # A ValidationException means it has ended already: Describe says how.
                with contextlib.suppress(JobError):
                    _call(client, "StopTransformJob", {"TransformJobName": name})
                stop_sent = True
            described = _call(client, "DescribeTransformJob", {"TransformJobName": name})
            last = f"status {described['TransformJobStatus']}"
            if described["TransformJobStatus"] == TransformJobStatus.STOPPED:
                reason = f"transform job {name} did not start within {deadline:g} s; stopped on SageMaker"
                note(f"transform job {name} is Stopped on SageMaker: running the job on Ray")
                return Fallback(reason)
            if TransformJobStatus(described["TransformJobStatus"]).is_terminal():
                return SageMakerRun(described)  # it ended before the stop took: its outcome stands
        except _Unavailable as e:
            last = e.reason
        if time.monotonic() >= give_up:
            raise RunnerError(
                f"SageMaker did not confirm transform job {name} Stopped within {settings.stop_wait_s:g} s "
                f"({last}); not running it on Ray, so that two engines never write the same output. "
                f"Check it with `{settings.describe_hint(name)}`"
            )
        time.sleep(max(0.0, min(delay, give_up - time.monotonic())))
        delay = min(delay * 2, POLL_MAX_S)
