"""`make soak`: minutes of jobs under mixed faults, then records in == records out.

Each round draws, from a seeded RNG, a set of CSV objects, a share of S3 requests to fail (503
SlowDown, 500, connection resets, bodies cut short, delays: tests/faults/proxy.py in front of the
real SeaweedFS) and a chance per payload that the model worker process dies (a hard exit). A round's
job must end Completed, or Failed and then be finished by `resume` (a payload can kill more workers
than InvocationsMaxRetries allows); every `.out` must then be byte-identical to what the model
computes from its input. Not part of `make test`: ``SOAK_MINUTES`` (set by `make soak`) enables it.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import resume_job, run_job
from runner.jobs.store import TransformJobStatus
from tests.integration.conftest import Bucket, job_request, model_request, write_model

from .proxy import FaultProxy, Faults

SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "0"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("ray_local"),
    pytest.mark.skipif(not SOAK_MINUTES, reason="a soak runs for minutes: `make soak` (SOAK_MINUTES)"),
    pytest.mark.timeout(int(SOAK_MINUTES * 60 * 2 + 600)),
]
MAX_RESUMES = 5

# Sums each CSV row; dies (a hard process exit, as an OOM kill looks) with probability KILL_P.
FLAKY_SUM_MODEL = """
import os
import random

import numpy

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    if random.random() < float(os.environ["KILL_P"]):
        os._exit(1)
    return numpy.atleast_2d(data).sum(axis=1)
"""


def expected(body: bytes) -> bytes:
    return b"".join(f"{sum(int(x) for x in line.split(b','))}\n".encode() for line in body.splitlines())


def test_soak(bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(int(os.environ.get("SOAK_SEED", "2026")))
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    upstream = os.environ["AWS_ENDPOINT_URL_S3"]
    config = RunnerConfig(home=tmp_path / "home")
    totals: Counter[str] = Counter()
    faults_injected: Counter[str] = Counter()
    deadline = time.monotonic() + SOAK_MINUTES * 60
    round_no = 0
    while time.monotonic() < deadline:
        round_no += 1
        prefix = f"r{round_no:03d}"
        objects = {
            f"{prefix}/in/part-{i}.csv": "".join(
                f"{i},{j},{rng.randrange(1000)}\n" for j in range(rng.randrange(1, 40_000))
            ).encode()
            for i in range(rng.randrange(1, 12))
        }
        for key, body in objects.items():
            bucket.put(key, body)
        kill_p = rng.choice([0.0, 0.02, 0.1])
        model = model_request(
            f"flaky-{round_no}",
            write_model(tmp_path / f"m{round_no}", FLAKY_SUM_MODEL),
            {"KILL_P": str(kill_p)},
        )
        request = job_request(
            f"soak-{round_no}",
            bucket.name,
            ModelName=f"flaky-{round_no}",
            MaxPayloadInMB=1,
            MaxConcurrentTransforms=2,
            ModelClientConfig={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 2},
            TransformInput={
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket.name}/{prefix}/in/"}
                }
            },
            TransformOutput={"S3OutputPath": f"s3://{bucket.name}/{prefix}/out"},
        )
        share = rng.choice([0.0, 0.05, 0.15])
        faults = Faults(
            slow_down=share * 0.3,
            internal_error=share * 0.2,
            reset=share * 0.2,
            cut_body=share * 0.2,
            delay=share * 0.1,
            seed=rng.randrange(1 << 30),
        )
        with FaultProxy(upstream, faults) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
            record = run_job(request, config, model_request=model)
            resumes = 0
            while record.status is not TransformJobStatus.COMPLETED and resumes < MAX_RESUMES:
                resumes += 1
                record = resume_job(record.name, config)
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", upstream)
        faults_injected.update(proxy.injected)
        assert record.status is TransformJobStatus.COMPLETED, (round_no, record.failure_reason)
        records_in = sum(body.count(b"\n") for body in objects.values())
        records_out = 0
        for key, body in objects.items():
            out = bucket.get(key.replace("/in/", "/out/", 1) + ".out")
            assert out == expected(body), key
            records_out += out.count(b"\n")
        assert sorted(bucket.keys(f"{prefix}/out/")) == sorted(
            k.replace("/in/", "/out/", 1) + ".out" for k in objects
        )
        totals.update(
            jobs=1,
            objects=len(objects),
            records_in=records_in,
            records_out=records_out,
            resumes=resumes,
            payloads_retried=int(record.describe()["x-runner"].get("payloads_retried", 0)),
            s3_requests=proxy.requests,
        )
    assert bucket.open_uploads() == []
    summary: dict[str, Any] = {
        "minutes": SOAK_MINUTES,
        **totals,
        "records_lost": totals["records_in"] - totals["records_out"],
        "s3_faults_injected": dict(faults_injected),
    }
    print("\nsoak:", json.dumps(summary))
    (Path(os.environ.get("SOAK_REPORT", tmp_path / "soak.json"))).write_text(json.dumps(summary, indent=1))
    assert summary["records_lost"] == 0 and totals["jobs"] >= 1
