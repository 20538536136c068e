"""``batch-transform benchmark job.json --model model.json``: the same request on SageMaker and on Ray,
both measured, priced and compared (what is measured: ``runner/cost/benchmark.py``).

SageMaker is reached with boto3's standard AWS configuration (or ``--sagemaker-endpoint``, e.g. a
``batch-transform serve``); the Ray side runs here as ``run`` would (``--ray-address`` and the other
engine flags). By default both run at once: the SageMaker job is followed on a thread while this
thread runs the Ray job (Ray's signal handling wants the main thread); ``--one-after-the-other`` runs
SageMaker's first, then Ray's, for a Ray side that shares nothing with the other.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runner.cli.args import _add_engine_flags, _config, _load_json
from runner.cli.console import err, out
from runner.cli.exit_codes import ExitCode
from runner.errors import RunnerError

HTML_HELP = "also write the report as one self-contained HTML page (table, timeline, costs, verdict)"
NODE_PRICE_HELP = (
    "the hourly price of a Ray node type (as its labels name it; '*' for any node without a price); "
    "repeatable; default: the price table's EC2 price of the type"
)
STOP_TRIES_S = 30.0
# A benchmark waits for SageMaker's instances as long as they take; past this it gives up.
START_DEADLINE_S = 3600.0


class BenchmarkError(RunnerError):
    """A side of the benchmark could not run at all (SageMaker unavailable, a bad request)."""


def add_benchmark_parser(sub: Any) -> None:
    b = sub.add_parser(
        "benchmark",
        help="run the same job on SageMaker and on Ray, measure, price and compare both",
    )
    b.add_argument("job", help="the CreateTransformJob request (JSON)")
    b.add_argument("--model", help="the CreateModel request (JSON), created on both sides")
    _add_engine_flags(b)
    b.add_argument(
        "--sagemaker-endpoint", help="SageMaker's endpoint URL (default: boto3's, AWS_ENDPOINT_URL_SAGEMAKER)"
    )
    b.add_argument(
        "--sagemaker-start-deadline",
        type=float,
        default=START_DEADLINE_S,
        metavar="S",
        help=f"seconds for SageMaker's job to start before it is stopped (default {START_DEADLINE_S:g})",
    )
    b.add_argument(
        "--one-after-the-other",
        action="store_true",
        help="run SageMaker's job first, then Ray's (default: both at once)",
    )
    b.add_argument(
        "--prices", metavar="FILE", help="price table JSON (default: $BATCH_TRANSFORM_PRICES, else built-in)"
    )
    b.add_argument("--node-price", action="append", metavar="TYPE=USD_PER_HOUR", help=NODE_PRICE_HELP)
    b.add_argument("--rel-tol", type=float, default=0.0, help="compare: relative tolerance for numbers")
    b.add_argument("--abs-tol", type=float, default=0.0, help="compare: absolute tolerance for numbers")
    b.add_argument("--out", metavar="FILE", help="also write the report as JSON to FILE")
    b.add_argument("--html", metavar="FILE", help=HTML_HELP)
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from runner.client.fallback import Fallback, SageMakerSettings, run_on_sagemaker
    from runner.cost.benchmark import measure, side_requests
    from runner.cost.compare import Tolerance
    from runner.cost.price_api import cache_path
    from runner.cost.prices import price_table
    from runner.cost.report import parse_node_prices
    from runner.engine.job import run_job  # imports Ray

    config = _config(args)
    request = _load_json(args.job, "job")
    model_request = _load_json(args.model, "model") if args.model else None
    prices = price_table(args.prices, os.environ, cache_path(config.data_dir))
    try:
        node_prices = parse_node_prices(args.node_price)
    except ValueError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    tolerance = Tolerance(args.rel_tol, args.abs_tol)
    requests = side_requests(request)
    settings = SageMakerSettings(
        endpoint_url=args.sagemaker_endpoint, start_deadline_s=args.sagemaker_start_deadline
    )

    def on_sagemaker() -> Any:
        return run_on_sagemaker(requests["sagemaker"], model_request, config, settings, _note("sagemaker"))

    def on_ray() -> Any:
        return run_job(requests["ray"], config, model_request=model_request, on_note=_note("ray"))

    _check_free(requests["ray"]["TransformJobName"], config)  # before SageMaker's job is created
    how = "one after the other" if args.one_after_the_other else "at once"
    if args.one_after_the_other:
        outcome = on_sagemaker()
        record = on_ray()
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="sagemaker") as pool:
            future = pool.submit(on_sagemaker)
            try:
                record = on_ray()
            except BaseException:  # Ctrl-C, or the Ray side could not start: SageMaker's job is stopped too
                _stop_sagemaker_job(requests["sagemaker"]["TransformJobName"], settings, future)
                raise
            outcome = future.result()
    if isinstance(outcome, Fallback):
        raise BenchmarkError(
            f"SageMaker could not run {requests['sagemaker']['TransformJobName']} ({outcome.reason}); the "
            f"Ray side ran as {record.name} ({record.status}): `batch-transform report {record.name}`"
        )
    report = measure(outcome.described, record, prices, tolerance, how, node_prices)
    return show_benchmark(report, args.json, args.out, args.html)


def show_benchmark(report: dict[str, Any], as_json: bool, path: str | None, html: str | None = None) -> int:
    """Print the report (and write it to ``path`` as JSON, ``html`` as a page); OK when both sides
    completed with equal outputs."""
    from runner.cost.benchmark import print_benchmark
    from runner.cost.html import benchmark_html

    if path:
        Path(path).write_text(json.dumps(report, indent=1, default=str) + "\n")
        err.print(f"report written to {path}", highlight=False)
    if html:
        Path(html).write_text(benchmark_html(report))
        err.print(f"page written to {html}", highlight=False)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        print_benchmark(report, out)
    return ExitCode.OK if report["outputs_equal"] else ExitCode.FAILED


def _check_free(name: str, config: Any) -> None:
    from runner.errors import ResourceInUseError, ResourceNotFoundError
    from runner.jobs.store import JobStore, in_use_message

    try:
        existing = JobStore(config.store_path).get_job(name)
    except ResourceNotFoundError:
        return
    raise ResourceInUseError(
        f"{in_use_message(existing.arn)}: the Ray side's name; give the request another name"
    )


def _stop_sagemaker_job(name: str, settings: Any, following: Future[Any]) -> None:
    """StopTransformJob, tried again while the job may not have been created yet (its follower is
    still starting it), for up to STOP_TRIES_S."""
    from botocore.exceptions import BotoCoreError, ClientError

    from runner.client.fallback import sagemaker_client

    client = sagemaker_client(settings)
    deadline = time.monotonic() + STOP_TRIES_S
    while True:
        try:
            client.stop_transform_job(TransformJobName=name)
            err.print(f"sagemaker: stopping {name}", highlight=False, markup=False)
            return
        except (BotoCoreError, ClientError) as e:
            if following.done() or time.monotonic() > deadline:
                err.print(f"sagemaker: could not stop {name}: {e}", highlight=False, markup=False)
                return
        time.sleep(1.0)


def _note(side: str) -> Any:
    def note(text: str) -> None:
        err.print(f"{side}: {text}", highlight=False, markup=False)

    return note
