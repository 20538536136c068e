"""``batch-transform ray up | down``: one Ray kept on this machine that each ``run`` without an address
joins, with the rules of a Ray it started itself (instances scaled down to the machine); ``down``
stops that Ray only, and a later ``run`` starts its own again instead of trying to join the gone one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import ROOT, _ray_env, _ray_tmpdir, run_cli_with

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runner.cli", "--home", str(home), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ray_up_is_joined_by_each_run_and_down_stops_it(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2\n3,4\n")
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    home = tmp_path / "home"
    with _ray_tmpdir() as ray_tmp:
        env = _ray_env(ray_tmp)
        up = cli(home, env, "ray", "up", "--num-cpus", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.startswith("Ray started at 127.0.0.1:"), up.stdout
        pid = int(up.stdout.split("(pid ")[1].split(",")[0])
        try:
            again = cli(home, env, "ray", "up")
            assert again.stdout.startswith("Ray already running at") and f"(pid {pid}," in again.stdout
            # 4 vCPUs on a 2-CPU machine Ray: scaled down, as on a Ray the run started itself.
            request = job_request(
                "on-machine-ray",
                bucket.name,
                ModelName="sum",
                TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
            )
            done = run_cli_with(request, model, tmp_path, home, env)
            assert done.returncode == 0, done.output
            assert "note: Ray: this machine's Ray at" in done.output
            assert (
                "(batch-transform ray up); instances larger than this machine are scaled down" in done.output
            )
            assert "ml.m5.xlarge has 4 vCPUs; this machine has 2 CPUs" in done.output
            assert bucket.get("out/a.csv.out") == b"3\n7\n"
        finally:
            down = cli(home, env, "ray", "down")
        assert down.returncode == 0 and down.stdout.startswith("Ray at 127.0.0.1:"), down.stdout + down.stderr
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert cli(home, env, "ray", "down").stdout.startswith("no Ray started by `batch-transform ray up`")
        # The next run does not try to join the Ray that is gone: it starts its own.
        request = job_request("after-down", bucket.name, ModelName="sum")
        request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/after"
        done = run_cli_with(request, model, tmp_path, home, env, timeout_s=180)
        assert done.returncode == 0, done.output
        assert "note: Ray: started by this process" in done.output
    record = JobStore(RunnerConfig(home=home).store_path).get_job("on-machine-ray")
    assert record.status is TransformJobStatus.COMPLETED
