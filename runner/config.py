"""Engine knobs (never part of the AWS request) and where the runner keeps its files.

The environment is read here, once, at the edge; everything else receives a ``RunnerConfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

HOME_ENV = "BATCH_TRANSFORM_HOME"
WORKER_READY_TIMEOUT_S = 600
DEFAULT_IN_FLIGHT_PER_WORKER = 2
DEFAULT_OBJECTS_IN_FLIGHT_PER_INSTANCE = 4
CONTAINER_STARTUP_TIMEOUT_S = 600
SERVE_WARM_POOL_S = 30.0


class ModelRuntime(StrEnum):
    """How a worker runs the model (the values are the ``--model-runtime`` choices)."""

    AUTO = "auto"  # decide per model (runner/model/artifacts.py ``choose_runtime``)
    HOOKS = "hooks"  # in process: code/inference.py or a framework image's defaults
    CONTAINER = "container"  # a SageMaker-style serving container (/ping, /invocations)


class FrameworkVersions(StrEnum):
    """What a different major version of the image's framework does (``--framework-versions``)."""

    CHECK = "check"  # refuse it, naming both versions (runner/model/frameworks.py)
    WARN = "warn"  # go on, and say so in the notes and Describe


class CsvHeader(StrEnum):
    NONE = "none"
    FIRST_LINE = "first-line"  # line 1 of each text/csv object is a header atop every payload


class OnRecordError(StrEnum):
    FAIL_OBJECT = "fail_object"  # SageMaker's: the object fails
    QUARANTINE = "quarantine"  # bad records written aside, left out of the .out


class PayloadReads(StrEnum):
    """Where a payload's bytes are read (the values are the ``--payload-reads`` choices)."""

    STREAM = "stream"  # the object's task streams it and sends the workers the bytes
    RANGED = "ranged"  # the workers, by ranged GETs, for objects over 1 MiB where the job allows it


class ObjectParallelism(StrEnum):
    INSTANCE = "instance"  # an object's payloads go to its instance's workers (SageMaker's placement)
    CLUSTER = "cluster"  # to every worker of the job; same payloads, same .out


def choice_of(enum: type[StrEnum], field: str, value: object) -> StrEnum:
    try:
        return enum(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValueError(f"{field} must be one of {allowed}; got {value!r}") from None


def data_home(environ: dict[str, str] | None = None) -> Path:
    """Where the job store, embedded S3 data and model cache live.

    ``$BATCH_TRANSFORM_HOME``, else ``$XDG_DATA_HOME/batch-transform``, else
    ``~/.local/share/batch-transform``.
    """
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "batch-transform"


@dataclass(frozen=True)
class RunnerConfig:
    """How the engine runs a job. Defaults give SageMaker's behaviour on a local Ray."""

    # None: Ray's own rules (RAY_ADDRESS, else a Ray started on this machine, else a new local one).
    ray_address: str | None = None
    home: Path | None = None
    # Workers (Ray actors) per instance; None = the resolved MaxConcurrentTransforms.
    workers_per_instance: int | None = None
    # Payloads queued per worker beyond the one it runs, so a worker never waits on the feeder.
    in_flight_per_worker: int = DEFAULT_IN_FLIGHT_PER_WORKER
    # Input objects fed at once on one instance (many small objects keep the workers busy).
    objects_in_flight_per_instance: int = DEFAULT_OBJECTS_IN_FLIGHT_PER_INSTANCE
    worker_ready_timeout_s: float = WORKER_READY_TIMEOUT_S
    install_requirements: bool = True
    # A framework of the model's image (its tag's version) installed here in another major version.
    framework_versions: FrameworkVersions = FrameworkVersions.CHECK
    # "auto": in-process hooks for models with code/inference.py and framework images, a serving
    # container for other Images; "hooks" / "container" force one (runner/model/container.py).
    model_runtime: ModelRuntime = ModelRuntime.AUTO
    # The container's server in process mode; None = the `serve` executable in the model folder.
    serve_command: str | None = None
    # How long GET /ping may take to answer 200 after a model server starts.
    container_startup_timeout_s: float = CONTAINER_STARTUP_TIMEOUT_S
    # Input/output extensions (docs/contract.md §9; off = SageMaker's bytes). "first-line": line 1 of each
    # text/csv object split by Line is a header sent atop every payload, not a record.
    csv_header: CsvHeader = CsvHeader.NONE
    # With csv_header first-line: write the header once atop each .out.
    csv_header_in_output: bool = False
    # text/csv split by Line: a newline inside RFC 4180 quotes does not end a record.
    csv_quoted_newlines: bool = False
    # Parquet / Arrow IPC objects: payloads of whole row groups / record batches, not whole objects.
    split_parquet_row_groups: bool = False
    # A payload the model fails on (a hook raises, the container answers 4xx/5xx): "fail_object" fails
    # its object (SageMaker's); "quarantine" bisects it to the failing records, writes them under
    # quarantine_path (s3:// or file://, outside S3OutputPath) and leaves them out of the .out.
    on_record_error: OnRecordError = OnRecordError.FAIL_OBJECT
    quarantine_path: str | None = None
    # "cluster": one object's payloads go to every worker of every instance (docs/contract.md §9), not only
    # to its instance's; packing and output bytes are unchanged, and each worker still runs one
    # payload at a time. The default: one 400k-row object on 2 instances ran at 106k-169k rows/s
    # against 95k-97k with "instance" (benchmarks/RESULTS.md).
    object_parallelism: ObjectParallelism = ObjectParallelism.CLUSTER
    # Seconds a finished job's model workers stay warm for the next job of the same model and
    # settings in this process (runner/engine/warm.py); 0: shut down at the job's end. `serve` keeps them
    # SERVE_WARM_POOL_S by default, `run` (one job a process) does not.
    warm_pool_s: float = 0.0
    # A GPU instance type on a Ray with no GPU: refused unless this is set (the model then runs on the
    # CPU, and the job says so).
    allow_cpu_for_gpu: bool = False
    # On a joined cluster, send this process's AWS keys to the nodes instead of letting each use its own
    # credential chain (engine/credentials.py).
    forward_aws_credentials: bool = False
    # On a joined cluster where the instances do not fit yet: seconds to wait for nodes to join (an
    # autoscaler's, or started by hand). None: AUTOSCALER_WAIT_S where an autoscaler runs, else none.
    wait_for_nodes_s: float | None = None
    # Who reads the payloads' bytes: "stream" the object's task; "ranged" the workers, by ranged GETs,
    # where the job's framing allows (runner/records/ranges.py). Streamed by default: measured faster on
    # the headline workload against the embedded S3, which stores text compressed in chunks that a
    # ranged GET decompresses whole (benchmarks/RESULTS.md).
    payload_reads: PayloadReads = PayloadReads.STREAM
    # Seconds each record takes on top of the model's own time: a slow SageMaker that `serve
    # --record-delay` plays for the benchmark's tests. 0 outside them.
    record_delay_s: float = 0.0

    def __post_init__(self) -> None:
        # Plain strings are accepted (CLI flags, Python callers) and become the enums.
        choices = {
            "model_runtime": ModelRuntime,
            "object_parallelism": ObjectParallelism,
            "on_record_error": OnRecordError,
            "csv_header": CsvHeader,
            "payload_reads": PayloadReads,
            "framework_versions": FrameworkVersions,
        }
        for name, enum in choices.items():
            object.__setattr__(self, name, choice_of(enum, name, getattr(self, name)))
        if self.warm_pool_s < 0:
            raise ValueError(f"warm_pool_s must be 0 or more seconds; got {self.warm_pool_s!r}")
        if self.record_delay_s < 0:
            raise ValueError(f"record_delay_s must be 0 or more seconds; got {self.record_delay_s!r}")

    @property
    def data_dir(self) -> Path:
        return self.home if self.home is not None else data_home()

    @property
    def store_path(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    def job_log_dir(self, job_name: str) -> Path:
        """Where a job's model-server logs go (one file per worker)."""
        return self.data_dir / "logs" / job_name


def is_jobs_api(address: str | None) -> bool:
    """An address of the Ray Jobs API (``http://head:8265``): ``run`` submits itself there as a Ray job."""
    return bool(address) and str(address).startswith(("http://", "https://"))
