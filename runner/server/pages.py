"""The pages ``serve`` shows a browser: ``GET /`` lists the jobs (status, progress, records per second,
cost so far) and ``GET /jobs/<name>`` is a job's report (``runner/cost/html.py``), priced as
``report`` prices it.

Who may see them: on a loopback address (``serve``'s default) anyone on this machine, as with any
local tool; with ``--allow-remote`` only a browser that gives one of the server's API keys by HTTP
Basic authentication (the access key id as the user name, the secret as the password), the
credentials the API itself takes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from runner.cost.html import job_html, jobs_html
from runner.cost.price_api import cache_path
from runner.cost.prices import price_table
from runner.cost.report import build_report
from runner.errors import ResourceNotFoundError
from runner.jobs.store import JobStore
from runner.server.sigv4 import Identity

HTML = "text/html; charset=utf-8"
REALM = 'Basic realm="batch-transform", charset="UTF-8"'


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    content_type: str = HTML


def is_page(path: str) -> bool:
    return path == "/" or path.startswith("/jobs/")


def allowed(authorization: str | None, identities: Mapping[str, Identity]) -> bool:
    """Whether an ``Authorization: Basic`` header names one of the API keys (compared in constant time)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        user, _, secret = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    identity = identities.get(user)
    return identity is not None and hmac.compare_digest(identity.secret_access_key, secret)


def render(path: str, store: JobStore, data_dir: Path) -> Page:
    prices = price_table(None, os.environ, cache_path(data_dir))
    if path == "/":
        rows = []
        for record in store.list_jobs():
            report = build_report(record, prices)
            tp = report["throughput"]
            ended = tp["objects_done"] + tp["objects_failed"]
            rows.append(
                {
                    "name": record.name,
                    "status": str(record.status),
                    "progress": f"{ended} of {tp['objects_total']} objects",
                    "records": tp["records"],
                    "records_per_s": tp["records_per_s"],
                    "usd": report["cost"]["runner_usd"],
                }
            )
        return Page(200, jobs_html(rows))
    name = unquote(path.removeprefix("/jobs/")).strip("/")
    try:
        record = store.get_job(name)
    except ResourceNotFoundError:
        return Page(404, f"no transform job named {name!r}\n", "text/plain; charset=utf-8")
    return Page(200, job_html(build_report(record, prices)))
