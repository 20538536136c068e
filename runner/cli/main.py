"""``batch-transform``: run | resume | validate | describe | list | stop | serve | ray | s3 | report |
compare.

Exit codes: 0 success (job Completed; compare: equal), 1 job Failed (compare: different), 2 invalid
request or usage, 3 other errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from runner import __version__
from runner.cli.args import (
    METRICS_FILE_HELP,
    _add_engine_flags,
    _add_input_flags,
    _config,
    _load_json,
)
from runner.cli.benchmark import add_benchmark_parser
from runner.cli.console import ProgressView, err, out
from runner.cli.cost import add_cost_parsers
from runner.cli.exit_codes import ExitCode
from runner.cli.s3 import add_s3_parser
from runner.config import (
    SERVE_WARM_POOL_S,
    is_jobs_api,
)
from runner.errors import JobError, Problem, ResourceInUseError, RunnerError, SpecError
from runner.jobs.counters import JobCounters
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus
from runner.server.faults import FaultMode, SlowSageMaker

JSON_OUTCOME_HELP = (
    "print the job's DescribeTransformJob answer as JSON on stdout (with x-runner.engine) instead of the "
    "summary; progress and notes stay on stderr"
)


def cmd_run(args: argparse.Namespace) -> int:
    from runner.client.fallback import SageMakerRun, run_on_sagemaker, settings_for  # --prefer sagemaker
    from runner.engine.job import run_job, shutdown_ray  # imports Ray: only for the commands that run jobs

    request = _load_json(args.job, "job")
    if args.job_name:
        request["TransformJobName"] = args.job_name
    model_request = _load_json(args.model, "model") if args.model else None
    fallback = None
    sagemaker = settings_for(
        args.prefer, args.sagemaker_endpoint, args.sagemaker_start_deadline, args.sagemaker_timeout
    )
    if sagemaker is not None:
        outcome = run_on_sagemaker(request, model_request, _config(args), sagemaker, _note)
        if isinstance(outcome, SageMakerRun):
            if args.json:
                described = dict(outcome.described)
                described["x-runner"] = {**described.get("x-runner", {}), "engine": "sagemaker"}
                out.print_json(json.dumps(described, default=str))
            else:
                for line in outcome.summary():
                    out.print(line, highlight=False, markup=False)
            return ExitCode.OK if outcome.completed else ExitCode.FAILED
        fallback = outcome
    if is_jobs_api(args.ray_address):
        return _submit_to_jobs_api(args, request, model_request)
    _stop_on_sigterm()
    view = ProgressView(args, str(request.get("TransformJobName", "")), _config(args).store_path)
    t0 = time.monotonic()
    try:
        record = run_job(
            request, _config(args), model_request=model_request, on_progress=view.callback(), on_note=_note
        )
    finally:
        view.close()
        if args.whole_process:
            # Now rather than in Ray's exit hook, which took ~1 s longer to let the process end.
            shutdown_ray()
    if args.json:
        engine = {"engine": "ray", **({"fallback": fallback.reason} if fallback is not None else {})}
        return _print_json_outcome(record, engine)
    code = _print_outcome(record, time.monotonic() - t0)
    if fallback is not None:
        out.print(fallback.engine_line, highlight=False, markup=False)
    return code


def _submit_to_jobs_api(
    args: argparse.Namespace, request: dict[str, Any], model_request: dict[str, Any] | None
) -> int:
    """``--ray-address http://head:8265``: the run goes to the cluster as a Ray job, once the request
    is known to be valid here (engine/submit.py)."""
    from runner.contract.spec import parse_transform_job
    from runner.engine.submit import remote_argv, submit_run
    from runner.model.artifacts import parse_create_model

    spec = parse_transform_job(request)
    if model_request is not None:
        parse_create_model(model_request)
    if args.forward_aws_credentials:
        err.print(
            "error: --forward-aws-credentials cannot go with a Ray Jobs API address: a Ray job's "
            "environment is shown in Ray's logs and dashboard; give the nodes their credentials "
            "(an instance profile, IRSA, a Kubernetes secret)",
            highlight=False,
            markup=False,
        )
        return ExitCode.INVALID
    files = {"job.json": Path(args.job).read_bytes()}
    if args.model:
        files["model.json"] = Path(args.model).read_bytes()
    return submit_run(
        args.ray_address,
        remote_argv(args.argv, args.job, args.model),
        files,
        spec.name,
        _write_through,
        _note,
    )


def _stop_on_sigterm() -> None:
    """SIGTERM (`ray job stop`, a pod's deletion, `kill`) stops the job as Ctrl-C does: running
    objects abort their uploads and the job ends Stopped, instead of the process dying mid-write."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _write_through(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(message: str) -> None:
    err.print(f"note: {message}", highlight=False, markup=False)


def cmd_resume(args: argparse.Namespace) -> int:
    if args.endpoint_url:  # the server runs it, in the background, as it runs CreateTransformJob
        from runner.client.remote import runner_operation

        answer = runner_operation(args.endpoint_url, "ResumeTransformJob", {"TransformJobName": args.name})
        out.print(
            f"Transform job {args.name}: resumed on {args.endpoint_url} ({answer.get('TransformJobArn')}); "
            f"follow it with: batch-transform describe {args.name} --endpoint-url {args.endpoint_url}",
            highlight=False,
            markup=False,
        )
        return ExitCode.OK
    from runner.engine.job import resume_job

    _stop_on_sigterm()
    view = ProgressView(args, args.name, _config(args).store_path)
    t0 = time.monotonic()
    try:
        record = resume_job(args.name, _config(args), on_progress=view.callback(), on_note=_note)
    finally:
        view.close()
    if args.json:
        return _print_json_outcome(record, {"engine": "ray"})
    return _print_outcome(record, time.monotonic() - t0)


def _print_json_outcome(record: JobRecord, engine: dict[str, str]) -> int:
    described = record.describe(epoch_times=False)
    described["x-runner"] = {**described.get("x-runner", {}), **engine}
    out.print_json(json.dumps(described, default=str))
    return ExitCode.OK if record.status is TransformJobStatus.COMPLETED else ExitCode.FAILED


def _print_outcome(record: JobRecord, elapsed: float) -> int:
    c = record.counters if record.counters is not None else JobCounters()
    output_path = record.request["TransformOutput"]["S3OutputPath"]
    out.print(f"Transform job {record.name}: {record.status}", highlight=False)
    if record.status is TransformJobStatus.COMPLETED:
        out.print(f"Output: {output_path.rstrip('/')}/<input key>.out", highlight=False)
    if record.failure_reason:
        out.print(f"FailureReason: {record.failure_reason}", highlight=False)
    if record.transform_start_time and record.transform_end_time:
        busy = record.transform_end_time - record.transform_start_time
        out.print(
            f"Time: {elapsed:.1f}s in all, {busy:.1f}s from workers ready to the last output; "
            f"{c.records:,} records, {c.bytes_in / 1e6:,.1f} MB in, "
            f"{c.objects_done} of {c.objects_total} objects written"
            + (f" ({c.objects_resumed} kept from before)" if c.objects_resumed else "")
            + (f"; {c.records_quarantined:,} records quarantined" if c.records_quarantined else ""),
            highlight=False,
        )
    return ExitCode.OK if record.status is TransformJobStatus.COMPLETED else ExitCode.FAILED


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.contract.spec import parse_transform_job
    from runner.model.artifacts import parse_create_model

    problems: list[tuple[str, Problem]] = []
    try:
        parse_transform_job(_load_json(args.job, "job"))
    except SpecError as e:
        problems += [(args.job, p) for p in e.problems]
    if args.model:
        try:
            parse_create_model(_load_json(args.model, "model"))
        except SpecError as e:
            problems += [(args.model, p) for p in e.problems]
    if args.json:
        listed = [
            {"file": f, "path": p.path, "value": p.value, "constraint": p.constraint, "message": str(p)}
            for f, p in problems
        ]
        out.print_json(json.dumps({"valid": not problems, "problems": listed}, default=repr))
    else:
        for f, p in problems:
            out.print(f"{f}: {p}", highlight=False, markup=False)
        if not problems:
            out.print("valid")
    return ExitCode.INVALID if problems else ExitCode.OK


def _remote_call(args: argparse.Namespace, operation: str, **kwargs: Any) -> dict[str, Any]:
    from runner.client.remote import remote_call

    return remote_call(args.endpoint_url, operation, **kwargs)


def cmd_describe(args: argparse.Namespace) -> int:
    if args.endpoint_url:
        described = _remote_call(args, "describe_transform_job", TransformJobName=args.name)
    else:
        described = JobStore(_config(args).store_path).get_job(args.name).describe(epoch_times=False)
    out.print_json(json.dumps(described, default=str))
    return ExitCode.OK


def cmd_list(args: argparse.Namespace) -> int:
    if args.endpoint_url:
        summaries = _remote_call(args, "list_transform_jobs", MaxResults=100)["TransformJobSummaries"]
    else:
        summaries = [r.summary(epoch_times=False) for r in JobStore(_config(args).store_path).list_jobs()]
    if args.json:
        out.print_json(json.dumps({"TransformJobSummaries": summaries}, default=str))
        return ExitCode.OK
    table = Table("TransformJobName", "TransformJobStatus", "CreationTime", "FailureReason")
    for s in summaries:
        name, status = s["TransformJobName"], s["TransformJobStatus"]
        table.add_row(name, status, str(s["CreationTime"]), (s.get("FailureReason") or "")[:80])
    out.print(table)
    return ExitCode.OK


def cmd_stop(args: argparse.Namespace) -> int:
    """StopTransformJob: InProgress -> Stopping; the process running the job aborts its uploads and
    marks it Stopped (a `run` in another terminal polls the store for this)."""
    if args.endpoint_url:
        _remote_call(args, "stop_transform_job", TransformJobName=args.name)
    else:
        running = (TransformJobStatus.IN_PROGRESS, TransformJobStatus.STOPPING)
        record = JobStore(_config(args).store_path).update_job_if(
            args.name, running, status=TransformJobStatus.STOPPING
        )
        if record.status not in running:
            raise JobError(
                f"The request was rejected because the transform job is in status {record.status}."
            )
    err.print(f"stopping {args.name}", highlight=False)
    return ExitCode.OK


def cmd_compare(args: argparse.Namespace) -> int:
    from runner.cost.compare import (
        CompareUsageError,
        Tolerance,
        compare_prefixes,
        comparison_json,
        summary_lines,
    )
    from runner.errors import ObjectNotFoundError

    try:
        result = compare_prefixes(args.a, args.b, Tolerance(args.rel_tol, args.abs_tol), args.max_diffs)
    except (CompareUsageError, ObjectNotFoundError) as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    if args.json:
        out.print_json(json.dumps(comparison_json(result)))
    else:
        for line in summary_lines(result):
            out.print(line, highlight=False, markup=False)
    return ExitCode.OK if result.equal else ExitCode.FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from runner.server.http import serve  # imports Ray: only for the commands that run jobs
    from runner.server.sigv4 import server_identities

    try:
        identities = server_identities(args.api_keys_file)
    except ValueError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID

    def ready(url: str) -> None:
        keys = ", ".join(sorted(identities))
        err.print(
            f"SageMaker API on {url} (jobs in {_config(args).store_path}); requests must be SigV4-signed "
            f"with an API key it was given (access key id {keys})",
            highlight=False,
        )

    try:
        serve(
            args.host,
            args.port,
            _config(args),
            identities,
            args.allow_remote,
            on_ready=ready,
            fault=FaultMode(args.fault) if args.fault else None,
            slow=SlowSageMaker(args.provisioning_delay, args.record_delay),
        )
    except ValueError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    except OSError as e:
        err.print(f"error: cannot serve on {args.host}:{args.port}: {e}", highlight=False, markup=False)
        return ExitCode.ERROR
    return ExitCode.OK


def cmd_ray_up(args: argparse.Namespace) -> int:
    from runner.engine.machine import ray_up

    home = _config(args).data_dir
    try:
        ray, started = ray_up(home, args.num_cpus, args.num_gpus)
    except RuntimeError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.ERROR
    state = "started" if started else "already running"
    out.print(
        f"Ray {state} at {ray.address} (pid {ray.pid}, log {ray.log}); `batch-transform run` without "
        "--ray-address joins it; `batch-transform ray down` stops it",
        highlight=False,
        markup=False,
    )
    return ExitCode.OK


def cmd_ray_down(args: argparse.Namespace) -> int:
    from runner.engine.machine import ray_down

    ray = ray_down(_config(args).data_dir)
    if ray is None:
        out.print("no Ray started by `batch-transform ray up` is running", highlight=False, markup=False)
    else:
        out.print(f"Ray at {ray.address} (pid {ray.pid}) stopped", highlight=False, markup=False)
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batch-transform", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--home", help="where jobs, models and caches are kept (default: $BATCH_TRANSFORM_HOME)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a CreateTransformJob request to its end")
    run.add_argument("job", help="CreateTransformJob request (JSON, as passed to boto3)")
    run.add_argument("--model", help="CreateModel request (JSON) for the job's ModelName")
    run.add_argument("--job-name", help="override TransformJobName (names are unique, as in SageMaker)")
    _add_engine_flags(run)
    _add_input_flags(run)
    run.add_argument(
        "--prefer",
        choices=("ray", "sagemaker"),
        default="ray",
        help="sagemaker: submit the job to SageMaker (boto3's AWS configuration) and run it on Ray only "
        "if SageMaker is unavailable (throttled, over quota, 5xx, unreachable, not started in time)",
    )
    run.add_argument(
        "--sagemaker-endpoint", help="with --prefer sagemaker: this endpoint URL instead of AWS's"
    )
    run.add_argument(
        "--sagemaker-start-deadline",
        type=float,
        help="with --prefer sagemaker: seconds for the job to start there before it is stopped and run on "
        "Ray (default 900)",
    )
    run.add_argument(
        "--sagemaker-timeout",
        type=float,
        help="with --prefer sagemaker: connect/read timeout per call (default 10)",
    )
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--metrics-file", help=METRICS_FILE_HELP)
    run.add_argument("--json", action="store_true", help=JSON_OUTCOME_HELP)
    run.set_defaults(func=cmd_run)

    res = sub.add_parser(
        "resume",
        help="finish a Failed, Stopped or orphaned job: only objects without a valid output run again",
    )
    res.add_argument("name", help="TransformJobName")
    res.add_argument("--endpoint-url", help="resume it on this `batch-transform serve` (ResumeTransformJob)")
    _add_engine_flags(res)
    res.add_argument("--no-progress", action="store_true")
    res.add_argument("--metrics-file", help=METRICS_FILE_HELP)
    res.add_argument("--json", action="store_true", help=JSON_OUTCOME_HELP)
    res.set_defaults(func=cmd_resume)

    val = sub.add_parser("validate", help="check a request (and model) without running it")
    val.add_argument("job")
    val.add_argument("--model")
    val.add_argument(
        "--json",
        action="store_true",
        help='{"valid": true|false, "problems": [{"file", "path", "value", "constraint", "message"}]}',
    )
    val.set_defaults(func=cmd_validate)

    endpoint = "a `batch-transform serve` URL (or SageMaker's); default: the local job store"
    desc = sub.add_parser("describe", help="DescribeTransformJob, as JSON")
    desc.add_argument("name")
    desc.add_argument("--endpoint-url", help=endpoint)
    desc.set_defaults(func=cmd_describe)

    lst = sub.add_parser("list", help="ListTransformJobs")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--endpoint-url", help=endpoint)
    lst.set_defaults(func=cmd_list)

    stop = sub.add_parser("stop", help="StopTransformJob: uploads in flight are aborted, no partial .out")
    stop.add_argument("name")
    stop.add_argument("--endpoint-url", help=endpoint)
    stop.set_defaults(func=cmd_stop)

    srv = sub.add_parser("serve", help="a SageMaker-compatible API (boto3 sagemaker client, endpoint_url)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8090, help="default: 8090; 0 picks a free port")
    srv.add_argument("--allow-remote", action="store_true", help="allow a --host other machines can reach")
    srv.add_argument(
        "--api-keys-file",
        metavar="PATH",
        help="the keys clients sign requests with: ACCESS_KEY_ID:SECRET_ACCESS_KEY, one pair a line "
        "(default: BATCH_TRANSFORM_API_KEYS_FILE, else BATCH_TRANSFORM_API_KEYS, else this process's "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); S3 is reached with the usual AWS credential chain",
    )
    _add_engine_flags(srv)
    _add_input_flags(srv)
    srv.add_argument(
        "--warm-pool-seconds",
        type=float,
        default=SERVE_WARM_POOL_S,
        metavar="S",
        help="keep a finished job's model workers S seconds for the next job of the same model and "
        f"settings (default: {SERVE_WARM_POOL_S:g}; 0: stop them at each job's end)",
    )
    srv.add_argument(
        "--fault",
        choices=[str(m) for m in FaultMode],
        help="play an unavailable SageMaker, for tests of `run --prefer sagemaker` (runner/server/faults.py)",
    )
    srv.add_argument(
        "--provisioning-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="play a slow SageMaker: hold each job S seconds before its instances start (for tests of "
        "`benchmark`)",
    )
    srv.add_argument(
        "--record-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="play a slow SageMaker: each record takes S seconds more (for tests of `benchmark`)",
    )
    srv.set_defaults(func=cmd_serve)

    add_s3_parser(sub)

    ray_cmd = sub.add_parser(
        "ray", help="keep one Ray running on this machine, which every `run` then joins (no start-up per job)"
    )
    ray_sub = ray_cmd.add_subparsers(dest="ray_command", required=True)
    up = ray_sub.add_parser(
        "up", help="start this machine's Ray (`ray start --head`), unless it runs already"
    )
    up.add_argument("--num-cpus", type=int, help="CPUs it offers (default: the machine's)")
    up.add_argument("--num-gpus", type=int, help="GPUs it offers (default: the machine's)")
    up.set_defaults(func=cmd_ray_up)
    down = ray_sub.add_parser("down", help="stop the Ray `ray up` started (no other Ray of the machine)")
    down.set_defaults(func=cmd_ray_down)

    add_cost_parsers(sub)
    add_benchmark_parser(sub)

    cmp = sub.add_parser(
        "compare", help="compare the .out objects under two output prefixes, record by record"
    )
    cmp.add_argument("a", help="s3://bucket/prefix/ or file:///path/")
    cmp.add_argument("b", help="s3://bucket/prefix/ or file:///path/")
    cmp.add_argument("--rel-tol", type=float, default=0.0, help="relative tolerance for numbers (default 0)")
    cmp.add_argument("--abs-tol", type=float, default=0.0, help="absolute tolerance for numbers (default 0)")
    cmp.add_argument("--max-diffs", type=int, default=10, help="differences to show (default 10)")
    cmp.add_argument("--json", action="store_true", help="the comparison as JSON")
    cmp.set_defaults(func=cmd_compare)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: a Jobs API run passes it on
    # The command is this process (``batch-transform``, ``python -m runner.cli``), which ends with it;
    # a caller passing argv (tests, scripts) may go on using the Ray the command joined.
    args.whole_process = argv is None
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except SpecError as e:
        err.print("invalid request:", highlight=False)
        for p in e.problems:
            err.print(f"  - {p}", highlight=False, markup=False)
        return ExitCode.INVALID
    except ResourceInUseError as e:
        err.print(f"ResourceInUse: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    except JobError as e:
        err.print(f"ValidationException: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    except RunnerError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
