"""The GPU path: a job on a GPU instance type gets a GPU for each worker, and the bundled
ONNX model runs on CUDA with the same answers as on the CPU.

Needs a GPU that Ray sees and onnxruntime-gpu (its CUDAExecutionProvider); skipped elsewhere, so CI
never needs one. On a GPU machine: ``pytest tests/integration/test_gpu.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from tests.conftest import Bucket
from tests.integration.conftest import job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "mlp-onnx"
ROWS = 2000

# Reports what the worker's session runs on, and the GPU Ray gave the worker.
PROBE_MODEL = """
import os

import onnxruntime as ort


def model_fn(model_dir):
    return ort.InferenceSession(
        os.path.join(model_dir, "model.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )


def input_fn(body, content_type):
    return body


def predict_fn(data, session):
    return f"{session.get_providers()[0]} {os.environ.get('CUDA_VISIBLE_DEVICES', '')}"


def output_fn(prediction, accept):
    return prediction + "\\n", accept
"""


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _skip_without_a_gpu() -> None:
    import ray

    try:
        import onnxruntime as ort
    except ImportError:
        pytest.skip("onnxruntime is not installed")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with a CUDA device (CUDAExecutionProvider is not available)")
    if ray.cluster_resources().get("GPU", 0.0) < 1:
        pytest.skip("needs a GPU that Ray sees")


def _gpu_job(name: str, bucket: Bucket, model: str) -> dict[str, Any]:
    return job_request(
        name,
        bucket.name,
        ModelName=model,
        BatchStrategy="MultiRecord",
        MaxConcurrentTransforms=1,
        TransformResources={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
    )


def test_gpu_instance_runs_the_model_on_cuda(bucket: Bucket, tmp_path: Path) -> None:
    _skip_without_a_gpu()
    build = _load(BUNDLED / "build.py", "gpu_mlp_onnx_build")
    build.build(tmp_path / "model")
    data = tmp_path / "rows.csv"
    build.make_csv(data, ROWS, 0)
    bucket.put("in/rows.csv", data.read_bytes())
    home = tmp_path / "home"

    # The worker has a GPU of its own and its session runs on CUDA.
    probe = write_model(tmp_path / "probe", PROBE_MODEL)
    shutil.copy(tmp_path / "model" / "model.onnx", probe / "model.onnx")
    record = run_job(
        _gpu_job("gpu-probe", bucket, "probe"),
        RunnerConfig(home=home),
        model_request=model_request("probe", probe),
    )
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    provider, _, device = bucket.get("out/rows.csv.out").decode().splitlines()[0].partition(" ")
    assert provider == "CUDAExecutionProvider" and device.strip() != "", (provider, device)

    # The bundled model on the GPU answers as it does on the CPU (labels equal; probabilities, printed
    # with 6 decimals, within float32 rounding).
    record = run_job(
        _gpu_job("gpu-mlp", bucket, "mlp"),
        RunnerConfig(home=home),
        model_request=model_request("mlp", tmp_path / "model" / "model.tar.gz"),
    )
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    hooks = _load(BUNDLED / "code" / "inference.py", "gpu_mlp_onnx_hooks")
    import onnxruntime as ort

    cpu = ort.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    body = data.read_bytes()
    expected, _ = hooks.output_fn(hooks.predict_fn(hooks.input_fn(body, "text/csv"), cpu), "text/csv")
    got = bucket.get("out/rows.csv.out").decode().splitlines()
    want = (expected.decode() if isinstance(expected, bytes) else expected).splitlines()
    assert len(got) == len(want) == ROWS
    for g, w in zip(got, want, strict=True):
        g_fields, w_fields = g.split(","), w.split(",")
        assert g_fields[0] == w_fields[0], (g, w)
        assert all(abs(float(a) - float(b)) <= 2e-6 for a, b in zip(g_fields[1:], w_fields[1:], strict=True))
