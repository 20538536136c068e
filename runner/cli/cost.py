"""``batch-transform report`` (a job's timeline, throughput and cost against SageMaker) and
``batch-transform prices`` (the price table those costs use: show it, or import AWS's own)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from runner.cli.args import _config
from runner.cli.benchmark import HTML_HELP, NODE_PRICE_HELP
from runner.cli.console import err, out
from runner.cli.exit_codes import ExitCode
from runner.errors import MissingExtraError
from runner.jobs.store import JobStore

PRICES_HELP = "price table JSON (default: $BATCH_TRANSFORM_PRICES, else built-in)"


def add_cost_parsers(sub: Any) -> None:
    rep = sub.add_parser("report", help="timeline, throughput, worker use and cost of a job vs SageMaker")
    rep.add_argument("name", help="TransformJobName")
    rep.add_argument("--json", action="store_true", help="the report as JSON")
    rep.add_argument(
        "--png", metavar="FILE", help="also plot the timeline and costs to FILE (needs matplotlib)"
    )
    rep.add_argument("--prices", metavar="FILE", help=PRICES_HELP)
    rep.add_argument("--html", metavar="FILE", help=HTML_HELP)
    rep.add_argument("--node-price", action="append", metavar="TYPE=USD_PER_HOUR", help=NODE_PRICE_HELP)
    rep.add_argument(
        "--sagemaker-job",
        metavar="NAME",
        help="put this SageMaker transform job (DescribeTransformJob through boto3) beside the job: both "
        "measured, priced and their outputs compared, as `benchmark` reports them",
    )
    rep.add_argument(
        "--sagemaker-endpoint", help="with --sagemaker-job: SageMaker's endpoint URL (default: boto3's)"
    )
    rep.add_argument(
        "--rel-tol", type=float, default=0.0, help="with --sagemaker-job: compare's relative tolerance"
    )
    rep.add_argument(
        "--abs-tol", type=float, default=0.0, help="with --sagemaker-job: compare's absolute tolerance"
    )
    rep.set_defaults(func=cmd_report)

    prices = sub.add_parser(
        "prices", help="the price table `report` uses: show it, or make one from AWS's Price List"
    )
    psub = prices.add_subparsers(dest="prices_command", required=True)
    show = psub.add_parser("show", help="print the table in use as JSON (the shape --prices reads)")
    show.add_argument("--prices", metavar="FILE", help=PRICES_HELP)
    imp = psub.add_parser(
        "import",
        help="turn AWS's Price List offer file for AmazonSageMaker (.../offers/v1.0/aws/AmazonSageMaker/"
        "current/<region>/index.json) into a price table for --prices",
    )
    imp.add_argument("offer_file", help="the downloaded offer file (JSON)")
    imp.add_argument("--region", help="the region to take (default: the file's only one)")
    imp.add_argument("--out", metavar="FILE", help="write the table to FILE (default: print it)")
    fetch = psub.add_parser(
        "fetch",
        help="ask AWS's Price List Query API (boto3 pricing GetProducts, standard AWS configuration) for "
        "SageMaker Batch Transform and EC2 on-demand prices, and cache them for report and benchmark",
    )
    fetch.add_argument("--region", help="the region to price (default: boto3's region, else us-east-1)")
    fetch.add_argument(
        "--types",
        nargs="+",
        metavar="ML_TYPE",
        help="only these ml instance types (default: every one SageMaker prices for Batch Transform)",
    )
    fetch.add_argument(
        "--endpoint-region",
        default=None,
        help="the Price List API endpoint's region: us-east-1 (default), eu-central-1 or ap-south-1",
    )
    prices.set_defaults(func=cmd_prices)


def cmd_report(args: argparse.Namespace) -> int:
    from runner.cost.price_api import cache_path
    from runner.cost.prices import PriceTableError, price_table
    from runner.cost.report import build_report, parse_node_prices, plot_report, print_report

    record = JobStore(_config(args).store_path).get_job(args.name)
    try:
        prices = price_table(args.prices, os.environ, cache_path(_config(args).data_dir))
        node_prices = parse_node_prices(args.node_price)
    except (PriceTableError, ValueError) as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    if args.sagemaker_job:
        return _report_beside_sagemaker(args, record, prices, node_prices)
    report = build_report(record, prices, node_prices=node_prices)
    if args.png:
        try:
            path = plot_report(report, args.png)
        except MissingExtraError as e:
            err.print(f"error: {e}", highlight=False, markup=False)
            return ExitCode.ERROR
        err.print(f"plot written to {path}", highlight=False)
    if args.html:
        from runner.cost.html import job_html

        Path(args.html).write_text(job_html(report))
        err.print(f"page written to {args.html}", highlight=False)
    if args.json:
        out.print_json(json.dumps(report))
    else:
        print_report(report, out)
    return ExitCode.OK


def _fetch_prices(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from runner.cost import price_api
    from runner.cost.prices import PriceTableError

    region = args.region or boto3.session.Session().region_name or "us-east-1"
    client = price_api.pricing_client(args.endpoint_region or price_api.PRICING_ENDPOINT_REGION)
    try:
        fetched = price_api.fetch_prices(client, region, args.types)
    except PriceTableError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    except (BotoCoreError, ClientError) as e:  # no credentials, no access, an outage
        err.print(f"error: the Price List API did not answer: {e}", highlight=False, markup=False)
        return ExitCode.ERROR
    table = fetched.table
    path = price_api.write_cache(table, price_api.cache_path(_config(args).data_dir))
    for name, why in fetched.unpriced.items():
        err.print(f"not priced: {name}: {why}", highlight=False, markup=False)
    full = len(table.prices) - len(fetched.unpriced)
    err.print(
        f"{full} of {len(table.prices)} ml types priced on both sides for {region} "
        f"(published {table.as_of}); cached in {path}: report and benchmark use it before --prices "
        "and the built-in table",
        highlight=False,
    )
    return ExitCode.OK


def _report_beside_sagemaker(
    args: argparse.Namespace, record: Any, prices: Any, node_prices: dict[str, float]
) -> int:
    from runner.cli.benchmark import show_benchmark
    from runner.client.fallback import SageMakerSettings, describe_on_sagemaker
    from runner.cost.benchmark import measure
    from runner.cost.compare import Tolerance

    if args.png:
        err.print("error: --png does not go with --sagemaker-job", highlight=False, markup=False)
        return ExitCode.INVALID
    described = describe_on_sagemaker(
        args.sagemaker_job, SageMakerSettings(endpoint_url=args.sagemaker_endpoint)
    )
    tolerance = Tolerance(args.rel_tol, args.abs_tol)
    report = measure(described, record, prices, tolerance, "existing jobs", node_prices)
    return show_benchmark(report, args.json, None, args.html)


def cmd_prices(args: argparse.Namespace) -> int:
    from runner.cost.price_api import cache_path
    from runner.cost.price_list import import_offer_file
    from runner.cost.prices import PriceTableError, price_table

    if args.prices_command == "fetch":
        return _fetch_prices(args)
    try:
        if args.prices_command == "show":
            table = price_table(args.prices, os.environ, cache_path(_config(args).data_dir))
        else:
            table = import_offer_file(args.offer_file, args.region)
    except PriceTableError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return ExitCode.INVALID
    text = json.dumps(table.to_json(), indent=1) + "\n"
    if args.prices_command == "import":
        priced = sum(p.sagemaker_usd_per_hour is not None for p in table.prices.values())
        err.print(
            f"{priced} of {len(table.prices)} ml types have a Batch Transform price for {table.region} "
            f"(published {table.as_of})",
            highlight=False,
        )
        if args.out:
            Path(args.out).write_text(text)
            err.print(f"written to {args.out}; use it with --prices {args.out}", highlight=False)
            return ExitCode.OK
    out.file.write(text)
    return ExitCode.OK
