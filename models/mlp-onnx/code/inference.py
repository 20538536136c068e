"""SageMaker inference hooks for the bundled ONNX MLP classifier (models/mlp-onnx).

model_fn(model_dir)            onnxruntime session on <model_dir>/model.onnx (CUDA first when present)
input_fn(body, content_type)   text/csv (no header, one row per line) or application/json
                               (a list of rows, or {"instances": [...]}) -> float32 array [N, features]
predict_fn(data, model)        class probabilities [N, classes], the whole mini-batch in one run
output_fn(prediction, accept)  text/csv: "label,p0,p1,p2\\n" per row (label = argmax, 6 decimals);
                               application/json: {"predictions": [{"label": 0, "probabilities": [...]}, ...]};
                               application/jsonlines: one {"label": ..., "probabilities": [...]} per line

Probabilities print as ``"%.6f"`` prints them. Content types may carry parameters
(``text/csv; charset=utf-8``). Threads: when ``OMP_NUM_THREADS`` is set (Ray sets it to the actor's
CPUs), onnxruntime's intra-op pool has that many threads and ``1`` also keeps pyarrow's CSV reader
single-threaded; unset, both use every core.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

try:
    import onnxruntime as ort
except ImportError as e:  # a plain install of the runner leaves onnxruntime to the user's choice
    raise ImportError(
        "the mlp-onnx example model needs onnxruntime: pip install 'batch-transform-runner[onnx]' "
        "(or [onnx-gpu] on a machine with a GPU)"
    ) from e

MODEL_FILE = "model.onnx"
CSV = "text/csv"
JSON = "application/json"
JSON_LINES = "application/jsonlines"
INPUT_TYPES = (CSV, JSON)
OUTPUT_TYPES = (CSV, JSON, JSON_LINES)
DECIMALS = 6  # output_fn's fast path (_fields) is written for 6
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def model_fn(model_dir: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no provider-assignment chatter per worker
    threads = _threads()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: between runs the CPUs parse CSV (pyarrow's pool)
    # or serve other workers on the node; spinning cost ~20% end to end on a 6 MB payload.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in PREFERRED_PROVIDERS if p in available]
    return ort.InferenceSession(
        os.path.join(model_dir, MODEL_FILE), sess_options=options, providers=providers
    )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@functools.lru_cache(maxsize=8)
def _csv_options(n_columns: int, use_threads: bool) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    read = pacsv.ReadOptions(autogenerate_column_names=True, use_threads=use_threads)
    # no null spellings: an empty field is a conversion error, and parsing is ~10% faster
    convert = pacsv.ConvertOptions(
        column_types={f"f{i}": pa.float32() for i in range(n_columns)},
        null_values=[],
        strings_can_be_null=False,
    )
    return read, convert


def _decode_csv(body: bytes) -> np.ndarray:
    first_end = body.find(b"\n")
    first_line = body if first_end < 0 else body[:first_end]
    n_columns = first_line.count(b",") + 1
    threads = _threads()
    read, convert = _csv_options(n_columns, threads is None or threads > 1)
    try:
        table = pacsv.read_csv(pa.py_buffer(body), read_options=read, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise ValueError(f"text/csv payload is not rows of {n_columns} numbers: {e}") from e
    data = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    start = 0
    for batch in table.to_batches():  # one per parsed block
        stop = start + batch.num_rows
        for j, column in enumerate(batch.columns):
            # The values buffer, zero-copy (no nulls: null_values=[]). Not column.to_numpy(): its
            # first call imports pandas where it is installed, ~0.5 CPU-s per process.
            data[start:stop, j] = np.frombuffer(
                column.buffers()[1], dtype=np.float32, count=len(column), offset=column.offset * 4
            )
        start = stop
    return data


def _decode_json(body: str | bytes) -> np.ndarray:
    document = json.loads(body)
    rows = document.get("instances") if isinstance(document, dict) else document
    if rows is None:
        raise ValueError('application/json payload must be a list of rows or {"instances": [rows]}')
    data = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    if data.ndim != 2:
        raise ValueError(f"application/json rows must be flat lists of numbers, got shape {data.shape}")
    return np.ascontiguousarray(data)


def input_fn(body: str | bytes, content_type: str) -> np.ndarray:
    media_type = _media_type(content_type)
    if media_type == CSV:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        if not raw or raw.isspace():
            return np.empty((0, 0), dtype=np.float32)
        return _decode_csv(raw)
    if media_type == JSON:
        return _decode_json(body)
    raise ValueError(f"unsupported content type {content_type!r}; supported: {', '.join(INPUT_TYPES)}")


def predict_fn(data: np.ndarray, model: ort.InferenceSession) -> np.ndarray:
    model_input = model.get_inputs()[0]
    n_features = model_input.shape[1]
    if len(data) == 0:
        return np.empty((0, model.get_outputs()[0].shape[1]), dtype=np.float32)
    if data.ndim != 2 or data.shape[1] != n_features:
        raise ValueError(f"expected rows of {n_features} features, got an array of shape {data.shape}")
    return model.run(None, {model_input.name: np.ascontiguousarray(data, dtype=np.float32)})[0]


# "%03d" % i for i in 0..999 as little-endian integers, pre-shifted to bytes 2-4 and 5-7 of a field
_THREE_DIGITS = np.array([int.from_bytes(b"%03d" % i, "little") for i in range(1000)], dtype="<u8")
_THOUSANDS = _THREE_DIGITS << np.uint64(16)
_UNITS = _THREE_DIGITS << np.uint64(40)
_WHOLE_AND_POINT = np.uint64(ord("0") | ord(".") << 8)


def _fields(values: np.ndarray) -> np.ndarray | None:
    """``"%.6f" % v`` for each v in [0, 1] as its 8 ASCII bytes in a little-endian uint64; None if
    any v lies outside [0, 1] (or is NaN).

    v (float32) * 10**6 is computed in float64 and rounded half-to-even like printf: float32 values
    are dyadic, so the float64 product never crosses a rounding edge and ties are exact.
    """
    scaled = np.rint(values.astype(np.float64) * 10.0**DECIMALS)
    if scaled.size and not (scaled.min() >= 0 and scaled.max() <= 10**DECIMALS):
        return None
    scaled = scaled.astype(np.int64)
    thousands = scaled // 1000
    units = scaled - thousands * 1000
    whole = thousands // 1000
    thousands -= whole * 1000
    fields = whole.astype(np.uint64)
    fields += _WHOLE_AND_POINT
    fields |= _THOUSANDS[thousands]
    fields |= _UNITS[units]
    return fields


def _rows(labels: np.ndarray, probabilities: np.ndarray, pieces: tuple[bytes, ...], end: bytes) -> bytes:
    """Fixed-width rows: pieces[0] label pieces[1] p0 pieces[2] p1 ... pieces[k] end, per row.

    Vectorised (one packed numpy record per row) for single-digit labels and probabilities in [0, 1],
    always so for this model; anything else gets the same text through Python formatting.
    """
    n_rows, n_classes = probabilities.shape
    fields = _fields(probabilities) if n_classes <= 10 else None
    if fields is None:
        lines = []
        for label, row in zip(labels.tolist(), probabilities.tolist(), strict=True):
            parts = [pieces[0], str(label).encode()]
            for piece, p in zip(pieces[1:], row, strict=True):
                parts += [piece, f"{p:.{DECIMALS}f}".encode()]
            lines.append(b"".join(parts) + end)
        return b"".join(lines)

    layout: list[tuple[str, str]] = []
    values: list[object] = []

    def add(dtype: str, value: object) -> None:
        layout.append((f"f{len(layout)}", dtype))
        values.append(value)

    if pieces[0]:
        add(f"S{len(pieces[0])}", pieces[0])
    add("u1", labels.astype(np.uint8) + 48)
    for j, piece in enumerate(pieces[1:]):
        if piece:
            add(f"S{len(piece)}", piece)
        add("<u8", fields[:, j])
    add(f"S{len(end)}", end)
    records = np.empty(n_rows, dtype=np.dtype(layout))  # packed: no padding between fields
    for (name, _), value in zip(layout, values, strict=True):
        records[name] = value
    return records.tobytes()


def _accepted(accept: str | None) -> str:
    for candidate in (accept or JSON).split(","):
        media_type = _media_type(candidate)
        if media_type == "*/*":
            return JSON
        if media_type in OUTPUT_TYPES:
            return media_type
    raise ValueError(f"unsupported accept type {accept!r}; supported: {', '.join(OUTPUT_TYPES)}")


def output_fn(prediction: np.ndarray, accept: str) -> tuple[bytes, str]:
    media_type = _accepted(accept)
    probabilities = np.asarray(prediction, dtype=np.float32)
    if probabilities.ndim != 2:
        raise ValueError(f"expected class probabilities [rows, classes], got shape {probabilities.shape}")
    labels = probabilities.argmax(axis=1) if probabilities.size else np.empty(0, dtype=np.int64)
    n_classes = probabilities.shape[1]
    if media_type == CSV:
        return _rows(labels, probabilities, (b"",) + (b",",) * n_classes, b"\n"), CSV
    json_pieces = (b'{"label": ', b', "probabilities": [') + (b", ",) * (n_classes - 1)
    if media_type == JSON_LINES:
        return _rows(labels, probabilities, json_pieces, b"]}\n"), JSON_LINES
    objects = _rows(labels, probabilities, json_pieces, b"]}, ")
    return b'{"predictions": [' + objects[:-2] + b"]}", JSON
