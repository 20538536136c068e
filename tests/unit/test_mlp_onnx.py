"""The bundled example model (models/mlp-onnx): deterministic build, SageMaker layout, hooks."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

MODEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "mlp-onnx"
CSV_LINE = re.compile(rb"[0-2](,[01]\.\d{6}){3}\n")
# Hand rows (one per label) whose reference probabilities lie >= 0.25e-6 from a 6-decimal rounding
# edge, far beyond float32 error, so the printed bytes cannot depend on the CPU's summation order.
HAND_ROWS = np.array(
    [
        np.tile([100.0, -50.0], 10),
        [(-1) ** i * (i + 1) * 12.5 for i in range(20)],
        np.tile([-150.0, 50.0, 25.0, 0.0], 5),
    ]
)


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = load_module("mlp_onnx_build", MODEL_ROOT / "build.py")
inference = load_module("mlp_onnx_inference", MODEL_ROOT / "code" / "inference.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlp-onnx")
    build.main(["--out-dir", str(out)])
    return out


@pytest.fixture(scope="module")
def session(model_dir):
    return inference.model_fn(str(model_dir))


def reference_probabilities(model_path: Path, rows: np.ndarray) -> np.ndarray:
    """Plain-numpy forward pass in float64 over the initializers stored in the ONNX file."""
    weights = {
        t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(model_path).graph.initializer
    }
    hidden = rows.astype(np.float64)
    for i in range(3):
        hidden = hidden @ weights[f"dense{i}.weight"] + weights[f"dense{i}.bias"]
        if i < 2:
            hidden = np.maximum(hidden, 0.0)
    exp = np.exp(hidden - hidden.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_build_is_deterministic(tmp_path):
    build.main(["--out-dir", str(tmp_path / "a"), "--sample-rows", "0"])
    build.main(["--out-dir", str(tmp_path / "b"), "--sample-rows", "0"])
    for name in ("model.onnx", "model.tar.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not (tmp_path / "a" / "sample.csv").exists()


def test_tarball_has_sagemaker_layout(model_dir):
    raw = (model_dir / "model.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["code", "code/inference.py", "model.onnx"]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        assert members[0].isdir()
        assert tar.extractfile("model.onnx").read() == (model_dir / "model.onnx").read_bytes()
        assert (
            tar.extractfile("code/inference.py").read() == (MODEL_ROOT / "code" / "inference.py").read_bytes()
        )


def test_model_signature(model_dir):
    model = onnx.load(model_dir / "model.onnx")
    onnx.checker.check_model(model)
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "features"
    assert graph_output.name == "probabilities"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = graph_input.type.tensor_type.shape.dim
    out_dims = graph_output.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and in_dims[1].dim_value == 20
    assert out_dims[0].dim_param and out_dims[1].dim_value == 3
    assert [op.op_type for op in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]


def test_hooks_on_sample(model_dir, session):
    body = (model_dir / "sample.csv").read_bytes()
    data = inference.input_fn(body, "text/csv")
    assert data.shape == (1000, 20) and data.dtype == np.float32 and data.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(data, np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float32))

    probabilities = inference.predict_fn(data, session)
    assert probabilities.shape == (1000, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        probabilities, reference_probabilities(model_dir / "model.onnx", data), atol=1e-5
    )

    text, content_type = inference.output_fn(probabilities, "text/csv")
    assert content_type == "text/csv"
    lines = text.splitlines(keepends=True)
    assert len(lines) == 1000 and all(CSV_LINE.fullmatch(line) for line in lines)
    printed = np.loadtxt(io.BytesIO(text), delimiter=",")
    np.testing.assert_array_equal(printed[:, 0], probabilities.argmax(axis=1))
    np.testing.assert_allclose(printed[:, 1:], probabilities, atol=5e-7 + 1e-7)
    assert set(printed[:, 0]) == {0, 1, 2}


def test_output_bytes_match_numpy_forward_pass(model_dir, session):
    reference = reference_probabilities(model_dir / "model.onnx", HAND_ROWS)
    edge_distance = np.abs((reference * 1e6) % 1 - 0.5)
    assert edge_distance.min() > 0.25, "reference lies near a rounding edge: pick other HAND_ROWS"
    expected = "".join(f"{row.argmax()},{row[0]:.6f},{row[1]:.6f},{row[2]:.6f}\n" for row in reference)
    assert [int(line[0]) for line in expected.splitlines()] == [0, 1, 2]

    body = "\n".join(",".join(f"{v:g}" for v in row) for row in HAND_ROWS) + "\n"
    prediction = inference.predict_fn(inference.input_fn(body, "text/csv"), session)
    assert inference.output_fn(prediction, "text/csv") == (expected.encode(), "text/csv")

    objects = [
        {"label": int(row.argmax()), "probabilities": [float(f"{p:.6f}") for p in row]} for row in reference
    ]
    json_text, json_type = inference.output_fn(prediction, "application/json")
    assert json_type == "application/json"
    assert json.loads(json_text) == {"predictions": objects}
    first = expected.splitlines()[0].split(",")
    assert json_text.startswith(
        f'{{"predictions": [{{"label": 0, "probabilities": [{", ".join(first[1:])}]}}, '.encode()
    )
    lines_text, lines_type = inference.output_fn(prediction, "application/jsonlines")
    assert lines_type == "application/jsonlines"
    assert lines_text.endswith(b"]}\n") and [json.loads(line) for line in lines_text.splitlines()] == objects


def test_csv_body_as_str_or_bytes(model_dir):
    text = (model_dir / "sample.csv").read_text()
    from_str = inference.input_fn(text, "text/csv")
    from_bytes = inference.input_fn(text.encode(), "text/csv")
    with_charset = inference.input_fn(text.encode(), "text/csv; charset=utf-8")
    np.testing.assert_array_equal(from_str, from_bytes)
    np.testing.assert_array_equal(from_str, with_charset)
    crlf = inference.input_fn(text.replace("\n", "\r\n").encode(), "text/csv")
    np.testing.assert_array_equal(from_str, crlf)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_json_input_forms(as_bytes):
    rows = HAND_ROWS.tolist()
    expected = HAND_ROWS.astype(np.float32)
    for document in (rows, {"instances": rows}):
        body = json.dumps(document)
        data = inference.input_fn(body.encode() if as_bytes else body, "application/json")
        assert data.dtype == np.float32 and data.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(data, expected)
    one_row = inference.input_fn(json.dumps(rows[0]), "application/json")
    np.testing.assert_array_equal(one_row, expected[:1])


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-npy", "application/jsonlines", ""])
def test_input_fn_rejects_unknown_content_type(content_type):
    message = f"unsupported content type {content_type!r}; supported: text/csv, application/json"
    with pytest.raises(ValueError, match=re.escape(message)):
        inference.input_fn(b"1,2\n", content_type)


def test_bad_payloads_are_clear(session):
    with pytest.raises(ValueError, match="not rows of 3 numbers"):
        inference.input_fn(b"1,2,3\n4,,6\n", "text/csv")
    with pytest.raises(ValueError, match="not rows of 3 numbers"):
        inference.input_fn(b"1,2,3\n4,x,6\n", "text/csv")
    with pytest.raises(ValueError, match=r"rows of 20 features, got an array of shape \(2, 3\)"):
        inference.predict_fn(inference.input_fn(b"1,2,3\n4,5,6\n", "text/csv"), session)
    with pytest.raises(ValueError, match=r"unsupported accept type 'text/plain'; supported: text/csv, "):
        inference.output_fn(np.full((1, 3), 1 / 3, dtype=np.float32), "text/plain")


def test_empty_payload(session):
    data = inference.input_fn(b"", "text/csv")
    prediction = inference.predict_fn(data, session)
    assert prediction.shape == (0, 3)
    assert inference.output_fn(prediction, "text/csv") == (b"", "text/csv")
    assert inference.output_fn(prediction, "application/json") == (b'{"predictions": []}', "application/json")


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("text/csv", "text/csv"),
        ("application/x-npy, text/csv", "text/csv"),
        ("application/jsonlines; charset=utf-8", "application/jsonlines"),
        ("*/*", "application/json"),
        (None, "application/json"),
    ],
)
def test_accept_resolution(accept, content_type):
    assert inference.output_fn(np.full((1, 3), 1 / 3, dtype=np.float32), accept)[1] == content_type


def test_probability_text_is_printf_six_decimals():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.random(30_000),
            rng.random(3_000) * 1e-5,
            np.arange(129) / 128,  # exact ties at the 7th decimal: printf rounds half to even
            [0.0, 1.0, 5e-7, 4.9999997e-7, 0.9999995, 0.99999946],
        ]
    ).astype(np.float32)
    values = values[: len(values) // 3 * 3].reshape(-1, 3)
    for probabilities in (values, values * 2.0):  # in [0, 1]: vectorised path; beyond: Python fallback
        text, _ = inference.output_fn(probabilities, "text/csv")
        expected = "".join(
            f"{row.argmax()},{row[0]:.6f},{row[1]:.6f},{row[2]:.6f}\n"
            for row in probabilities.astype(np.float64)
        )
        assert text == expected.encode()


def test_make_csv_is_deterministic_and_about_218_bytes_a_row(tmp_path):
    a, b, longer = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "longer.csv"
    size = build.make_csv(a, 5000, seed=3)
    assert build.make_csv(b, 5000, seed=3) == size == a.stat().st_size
    assert a.read_bytes() == b.read_bytes()
    build.make_csv(longer, 70_000, seed=3)  # crosses a generation chunk
    assert longer.read_bytes()[:size] == a.read_bytes()
    build.make_csv(b, 5000, seed=4)
    assert a.read_bytes() != b.read_bytes()
    assert 212 < size / 5000 < 224

    text = a.read_text()
    assert text.endswith("\n") and "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 5000
    for line in lines[:200]:
        fields = line.split(",")
        assert len(fields) == 20
        assert all(field == f"{float(field):.6f}" for field in fields)


def test_sample_out_option(tmp_path):
    sample = tmp_path / "data" / "sample.csv"
    build.main(["--out-dir", str(tmp_path / "model"), "--sample-rows", "25", "--sample-out", str(sample)])
    assert sample.read_text().count("\n") == 25
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.onnx", "model.tar.gz"]
    with gzip.open(tmp_path / "model" / "model.tar.gz") as gz:
        assert gz.read(1)  # a valid gzip stream


def test_requests_are_valid_sagemaker_requests():
    from runner.contract.spec import parse_transform_job, validate_request

    job_request = json.loads((MODEL_ROOT / "job.json").read_text())
    model_request = json.loads((MODEL_ROOT / "model.json").read_text())
    assert validate_request("CreateModel", model_request) == []
    job = parse_transform_job(job_request)
    assert job.model_name == model_request["ModelName"] == "mlp-onnx"
    assert (job.max_payload_mb, job.max_concurrent_transforms) == (6, 2)
    assert job.transform_input.content_type == job.transform_output.accept == "text/csv"
    container = model_request["PrimaryContainer"]
    assert container["ModelDataUrl"].endswith("/model.tar.gz")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
