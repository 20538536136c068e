"""A model worker process that dies mid-payload: the payload runs again on another worker, within the
request's InvocationsMaxRetries, and the output is byte-identical to a run without the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import RunnerConfig
from runner.job import run_job
from runner.state import TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Dies (a hard process exit, as an OOM kill would look) on the payload named in DIE_ON, once per
# marker file, so the retry on the next worker succeeds; DIE_ALWAYS kills every worker that gets it.
DYING_MODEL = """
import os

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    text = body if isinstance(body, str) else body.decode()  # text/csv arrives as str (toolkit rule)
    marker = os.environ["DIE_MARKER"]
    if text.startswith(os.environ["DIE_ON"]):
        if os.environ.get("DIE_ALWAYS") or not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
    return text.upper(), accept
"""


def run_dying(bucket: Bucket, tmp_path: Path, name: str, always: bool, retries: int) -> object:
    env = {"DIE_MARKER": str(tmp_path / "died"), "DIE_ON": "row-0050"}
    if always:
        env["DIE_ALWAYS"] = "1"
    model = model_request("dying", write_model(tmp_path / "m", DYING_MODEL), env)
    request = job_request(
        name,
        bucket.name,
        ModelName="dying",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        ModelClientConfig={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": retries},
    )
    return run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)


def test_a_worker_killed_mid_payload_loses_and_doubles_nothing(bucket: Bucket, tmp_path: Path) -> None:
    rows = b"".join(f"row-{i:04d}\n".encode() for i in range(200))
    bucket.put("in/a.csv", rows)
    record = run_dying(bucket, tmp_path, "worker-dies", always=False, retries=3)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason  # type: ignore[attr-defined]
    assert bucket.get("out/a.csv.out") == rows.upper()
    counters = record.describe()["x-runner"]  # type: ignore[attr-defined]
    # The dying payload and any others queued on that worker ran again elsewhere; none twice in the output.
    assert counters["payloads_retried"] >= 1 and counters["records"] == 200
    assert sum(1 for w in counters["workers"] if w.get("lost")) == 1


def test_a_payload_that_kills_every_worker_fails_its_object_saying_how_many_tries(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.csv", b"".join(f"row-{i:04d}\n".encode() for i in range(100)))
    record = run_dying(bucket, tmp_path, "workers-die", always=True, retries=1)
    assert record.status is TransformJobStatus.FAILED  # type: ignore[attr-defined]
    reason = record.failure_reason  # type: ignore[attr-defined]
    assert "payload 50: the model worker died while transforming it; 2 of at most 2 tries made" in reason
    assert "InvocationsMaxRetries=1" in reason
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []
