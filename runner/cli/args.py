"""The CLI's shared flags and what they become: the RunnerConfig of a command, and the request files
it reads (a missing or malformed one is an invalid request, exit 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from runner.cli.console import err
from runner.cli.exit_codes import ExitCode
from runner.config import (
    CsvHeader,
    FrameworkVersions,
    ModelRuntime,
    ObjectParallelism,
    OnRecordError,
    PayloadReads,
    RunnerConfig,
)

METRICS_FILE_HELP = (
    "keep the job's counters in this file in Prometheus' text format (node_exporter textfile collector)"
)


def _load_json(path: str, what: str) -> dict[str, Any]:
    """A request file; a missing or malformed one is an invalid request (exit 2)."""
    problem = None
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, IsADirectoryError):
        problem = "does not exist"
    except json.JSONDecodeError as e:
        problem = f"is not valid JSON: {e}"
    except RecursionError:
        problem = "is not valid JSON: nested too deeply"
    else:
        if isinstance(data, dict):
            return data
        problem = f"must hold a JSON object, not {type(data).__name__}"
    err.print(f"error: {what} file {path} {problem}")
    raise SystemExit(ExitCode.INVALID)


def _config(args: argparse.Namespace) -> RunnerConfig:
    return RunnerConfig(
        ray_address=getattr(args, "ray_address", None),
        home=Path(args.home) if getattr(args, "home", None) else None,
        workers_per_instance=getattr(args, "workers_per_instance", None),
        worker_ready_timeout_s=getattr(args, "worker_ready_timeout", None)
        or RunnerConfig.worker_ready_timeout_s,
        model_runtime=getattr(args, "model_runtime", None) or RunnerConfig.model_runtime,
        serve_command=getattr(args, "serve_command", None),
        container_startup_timeout_s=getattr(args, "container_startup_timeout", None)
        or RunnerConfig.container_startup_timeout_s,
        csv_header=getattr(args, "csv_header", None) or RunnerConfig.csv_header,
        csv_header_in_output=bool(getattr(args, "csv_header_in_output", False)),
        csv_quoted_newlines=bool(getattr(args, "csv_quoted_newlines", False)),
        split_parquet_row_groups=bool(getattr(args, "split_parquet_row_groups", False)),
        on_record_error=getattr(args, "on_record_error", None) or RunnerConfig.on_record_error,
        quarantine_path=getattr(args, "quarantine_path", None),
        object_parallelism=getattr(args, "object_parallelism", None) or RunnerConfig.object_parallelism,
        payload_reads=getattr(args, "payload_reads", None) or RunnerConfig.payload_reads,
        framework_versions=getattr(args, "framework_versions", None) or RunnerConfig.framework_versions,
        warm_pool_s=getattr(args, "warm_pool_seconds", None) or RunnerConfig.warm_pool_s,
        allow_cpu_for_gpu=bool(getattr(args, "allow_cpu_for_gpu", False)),
        forward_aws_credentials=bool(getattr(args, "forward_aws_credentials", False)),
        wait_for_nodes_s=getattr(args, "wait_for_nodes", None),
    )


def _add_input_flags(parser: argparse.ArgumentParser) -> None:
    """Opt-in input/output extensions (docs/contract.md §9); without them every job is SageMaker's,
    byte for byte."""
    parser.add_argument(
        "--csv-header",
        choices=[m.value for m in CsvHeader],
        help="first-line: line 1 of each text/csv object (SplitType Line) is a header, sent atop every "
        "payload and not counted as a record (default: none)",
    )
    parser.add_argument(
        "--csv-header-in-output",
        action="store_true",
        help="with --csv-header first-line: write the header once atop each .out",
    )
    parser.add_argument(
        "--csv-quoted-newlines",
        action="store_true",
        help="text/csv with SplitType Line: a newline inside an RFC 4180 quoted field does not end a record",
    )
    parser.add_argument(
        "--split-parquet-row-groups",
        action="store_true",
        help="Parquet / Arrow IPC objects (SplitType None): payloads of whole row groups / record batches "
        "under MaxPayloadInMB instead of the whole object",
    )
    parser.add_argument(
        "--on-record-error",
        choices=[m.value for m in OnRecordError],
        help="quarantine: a payload the model fails on is bisected to its failing records, which are "
        "written to --quarantine-path and left out of the .out; the job goes on (default: fail_object, "
        "SageMaker's: the object fails)",
    )
    parser.add_argument(
        "--quarantine-path",
        help="with --on-record-error quarantine: s3:// or file:// prefix outside S3OutputPath; bad records "
        "go to <path>/<job name>/<input key relative to the input prefix>.jsonl",
    )


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """Where and how jobs run (RunnerConfig): the Ray cluster, workers, the model runtime."""
    parser.add_argument(
        "--ray-address",
        help="run on this Ray cluster (host:port, auto); default: $RAY_ADDRESS, else a Ray running on "
        "this machine, else a new local one, the only kind whose instances are scaled down to fit",
    )
    parser.add_argument(
        "--allow-cpu-for-gpu",
        action="store_true",
        help="run a GPU instance type on a Ray with no GPU (on the CPU); refused without this",
    )
    parser.add_argument(
        "--wait-for-nodes",
        type=float,
        metavar="SECONDS",
        help="on a joined Ray cluster too small for the instances yet, wait this long for nodes to join "
        "(default: 600 where an autoscaler runs, else fail at once)",
    )
    parser.add_argument(
        "--forward-aws-credentials",
        action="store_true",
        help="on a joined Ray cluster, send this process's AWS keys to the nodes (default: each node "
        "uses its own credential chain; only the endpoint, region and retry settings are sent)",
    )
    parser.add_argument(
        "--workers-per-instance", type=int, help="default: the resolved MaxConcurrentTransforms"
    )
    parser.add_argument("--worker-ready-timeout", type=float, help="seconds for model download + model_fn")
    _add_runtime_flags(parser)


def _add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """How the model runs: in-process hooks or a serving container (runner/model/container.py)."""
    parser.add_argument(
        "--model-runtime",
        choices=[m.value for m in ModelRuntime],
        help="auto (default): hooks for code/inference.py and framework images, else a serving container",
    )
    parser.add_argument(
        "--framework-versions",
        choices=[m.value for m in FrameworkVersions],
        help="check (default): a framework of the model's image (the version its tag names, e.g. "
        "sagemaker-xgboost:1.7-1 is xgboost 1.7) installed here in another major version fails the job; "
        "warn: run with the installed version, and say so",
    )
    parser.add_argument(
        "--serve-command",
        help="the model server to start per worker (default: the model folder's `serve` executable)",
    )
    parser.add_argument(
        "--container-startup-timeout", type=float, help="seconds for a model server's /ping to answer 200"
    )
    parser.add_argument(
        "--object-parallelism",
        choices=[m.value for m in ObjectParallelism],
        help="cluster (default): an object's payloads go to every worker of the job; instance: only to "
        "its instance's workers, as SageMaker places them (same payloads, same output bytes either way)",
    )
    parser.add_argument(
        "--payload-reads",
        choices=[m.value for m in PayloadReads],
        help="stream (default): each object is read through one task, which sends the workers the "
        "bytes; ranged: for uncompressed Line (MultiRecord) or None input over 1 MiB, each worker reads "
        "its payloads' bytes itself by ranged GETs (same payloads, same output bytes)",
    )
