"""Default request decoders and response encoders of the SageMaker serving toolkits.

Users' scripts rely on the exact bytes of each: ``TK_*`` port aws/sagemaker-inference-toolkit
``decoder.py``/``encoder.py`` (base and PyTorch images: ``np.genfromtxt``/``np.savetxt`` for CSV),
``CONTAINERS_*`` port aws/sagemaker-containers ``_encoders.py`` (scikit-learn and XGBoost images: the
``csv`` module both ways). ``application/jsonlines`` is this runner's addition to both. Decoders take
the body as the toolkit hands it over (``str`` for JSON and CSV, else ``bytes``); encoders return
``str`` or ``bytes``. CSV of plain numbers is parsed by pyarrow; anything pyarrow could read
differently goes to the toolkit's own function. The default hooks of each image family built
from these are in ``default_hooks.py``.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from runner.errors import UnsupportedFormatError
from runner.extras import require

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSONLINES = "application/jsonlines"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)  # the only types whose body reaches a hook as str (toolkit UTF8_TYPES)
LIBSVM = "text/libsvm"
X_LIBSVM = "text/x-libsvm"
RECORDIO_PROTOBUF = "application/x-recordio-protobuf"

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], "str | bytes"]

_BOM = b"\xef\xbb\xbf"


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _plain_numeric_csv(data: bytes, *, blank_lines: bool, infer: bool = False) -> np.ndarray | None:
    """The body as a 2-D float64 array when every cell is a number pyarrow reads exactly as Python's
    ``float`` does; ``None`` when the toolkit's parser must decide (comments, quotes, blanks, NaN
    spellings, a BOM, a bare CR, ragged rows, ...). ``infer``: the type ``genfromtxt(dtype=None)``
    gives, int64 when every cell is an integer, float64 when none of the columns is integer-only;
    ``None`` for a mix (genfromtxt makes a structured array of it)."""
    if not data or data.startswith(_BOM) or b"#" in data or b'"' in data:
        return None
    if infer and b"+" in data:
        return None  # pyarrow reads "+5" as a double; genfromtxt's int() takes it as an integer
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None  # pyarrow ends a line at a bare CR; genfromtxt and csv.reader do not
    if not blank_lines and (data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data):
        return None  # csv.reader yields an empty row for a blank line; pyarrow skips it
    first = data.split(b"\n", 1)[0]
    names = [f"f{i}" for i in range(first.count(b",") + 1)]
    types = None if infer else dict.fromkeys(names, pa.float64())
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if any(column.null_count for column in table.columns):
        return None  # an empty cell or a NaN spelling: genfromtxt/astype know their own rules
    kinds = {column.type for column in table.columns}
    if kinds not in ({pa.float64()}, {pa.int64()}):
        return None  # text, another type, or int and float columns mixed: genfromtxt decides
    out = np.empty((table.num_rows, len(names)), dtype=np.dtype(kinds.pop().to_pandas_dtype()))
    for i, column in enumerate(table.columns):
        start = 0
        for chunk in column.chunks:
            out[start : start + len(chunk), i] = float_values(chunk)
            start += len(chunk)
    return out


def float_values(array: pa.Array) -> np.ndarray:
    """A null-free numeric array's values, zero-copy. Not ``Array.to_numpy``: its first call imports
    pandas where it is installed, ~0.5 CPU-s in every model worker."""
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


# ---- decoders ---------------------------------------------------------------------------------


def decode_json(data: str | bytes) -> np.ndarray:
    return np.array(json.loads(data))


def decode_csv(data: str | bytes) -> np.ndarray:
    """The toolkit's ``decoder._csv_to_numpy``: ``np.genfromtxt(StringIO(s), dtype=None,
    delimiter=",")``, squeezed. Each column's type is inferred, so integer-only CSV decodes to int64
    (``1,2,3`` sums to ``6``), float columns to float64, and a mix to a structured array."""
    fast = _plain_numeric_csv(_as_bytes(data), blank_lines=True, infer=True)
    if fast is not None:
        return np.squeeze(fast)
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    if not text.strip():
        return np.array([], dtype=np.float64)  # what genfromtxt returns, without its warning
    return np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")


def decode_csv_rows(data: str | bytes) -> np.ndarray:
    """sagemaker-containers ``csv_to_numpy``: ``csv.reader`` rows, squeezed, cast to float64; cells
    that are not numbers leave the array as strings (the caller's cast then names the cell)."""
    fast = _plain_numeric_csv(_as_bytes(data), blank_lines=False)
    if fast is not None:
        return np.squeeze(fast)
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    try:
        rows = list(
            csv.reader(io.StringIO(text), delimiter=",", quotechar='"', doublequote=True, strict=True)
        )
        array = np.array(rows).squeeze()
    except (csv.Error, ValueError) as e:
        raise ValueError(f"Error while decoding csv: {e}") from e
    try:
        return array.astype(np.float64)
    except ValueError:
        return array


def decode_npy(data: str | bytes) -> Any:
    return np.load(io.BytesIO(_as_bytes(data)), allow_pickle=True)


def decode_npz(data: str | bytes) -> Any:
    sparse = require("scipy.sparse", "npz", "decoding application/x-npz (scipy.sparse.load_npz)")
    return sparse.load_npz(io.BytesIO(_as_bytes(data)))


def decode_jsonlines(data: str | bytes) -> np.ndarray:
    lines = _as_bytes(data).splitlines()
    return np.array([json.loads(line) for line in lines if line.strip()])


# ---- encoders ---------------------------------------------------------------------------------


def _tolist(value: Any) -> Any:
    # numpy arrays and scalars (np.float32, np.int64, ...) become Python values, as in the toolkits.
    if hasattr(value, "tolist"):
        return value.tolist()
    return json.JSONEncoder().default(value)


def encode_json(prediction: Any) -> str:
    return json.dumps(prediction, default=_tolist)


def _plain_numeric_rows(prediction: Any) -> str | None:
    """Numeric 1-D/2-D arrays written as ``"%s"`` would write them, with Python's float/int ``str``
    (identical to numpy's for float64, integers and booleans; float32 differs, so it is left out)."""
    if not isinstance(prediction, np.ndarray) or prediction.size == 0 or prediction.ndim not in (1, 2):
        return None
    if prediction.dtype != np.float64 and prediction.dtype.kind not in "iub":
        return None
    rows = prediction.tolist()
    if prediction.ndim == 1:
        return "\n".join(map(str, rows)) + "\n"
    return "\n".join(",".join(map(str, row)) for row in rows) + "\n"


def encode_csv(prediction: Any) -> str:
    """``np.savetxt(buf, prediction, delimiter=",", fmt="%s")``: one ``\\n``-ended line per row."""
    array = np.asarray(prediction)
    fast = _plain_numeric_rows(array)
    if fast is not None:
        return fast
    buffer = io.StringIO()
    np.savetxt(buffer, array, delimiter=",", fmt="%s")
    return buffer.getvalue()


def encode_csv_rows(prediction: Any) -> str:
    """sagemaker-containers ``array_to_csv``: a 1-D array is a column; ``csv.writer`` quoting."""
    array = np.array(prediction)
    if array.ndim == 1:
        array = array.reshape(array.shape[0], 1)
    fast = _plain_numeric_rows(array)
    if fast is not None:
        return fast
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True
    )
    try:
        writer.writerows(array)
    except csv.Error as e:
        raise ValueError(f"Error while encoding csv: {e}") from e
    return buffer.getvalue()


def encode_npy(prediction: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, prediction)
    return buffer.getvalue()


def encode_jsonlines(prediction: Any) -> str:
    rows = prediction.tolist() if isinstance(prediction, np.ndarray) else prediction
    if not isinstance(rows, (list, tuple)):
        rows = [rows]
    return "".join(json.dumps(row, default=_tolist) + "\n" for row in rows)


# ---- XGBoost DMatrix decoders (sagemaker-xgboost-container encoder.py) -------------------------


def xgboost_module(needed_for: str = "the XGBoost default input_fn") -> Any:
    try:
        import xgboost
    except ImportError as e:
        raise ImportError(
            f"{needed_for} needs the xgboost package in the worker environment (xgboost, or xgboost-cpu)"
        ) from e
    return xgboost


def decode_csv_dmatrix(data: str | bytes) -> Any:
    """``csv_to_dmatrix``: delimiter sniffed from the first line, empty cells NaN. Like the
    container, a leading or trailing newline makes the rows ragged and fails."""
    xgb = xgboost_module()
    text = data if isinstance(data, str) else bytes(data).decode()
    sniffed = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    delimiter = "," if sniffed.isalnum() else sniffed
    rows = [["nan" if cell == "" else cell for cell in line.split(delimiter)] for line in text.split("\n")]
    return xgb.DMatrix(np.array(rows).astype(np.float64))


def decode_libsvm_dmatrix(data: str | bytes) -> Any:
    """``libsvm_to_dmatrix``: ``index:value`` tokens, 1-based indices shifted to 0-based."""
    xgb = xgboost_module()
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    rows: list[dict[int, float]] = []
    for line in text.strip().split("\n"):
        row = {}
        for token in line.strip().split():
            if ":" in token:
                index, value = token.split(":", 1)
                row[int(index)] = float(value)
        rows.append(row)
    if not any(rows):
        return xgb.DMatrix(np.empty((0, 0)))
    indices = [i for row in rows for i in row]
    offset = 1 if min(indices) >= 1 else 0
    out = np.zeros((len(rows), max(indices) - offset + 1))
    for r, row in enumerate(rows):
        for column, cell in row.items():
            out[r, column - offset] = cell
    return xgb.DMatrix(out)


def decode_recordio_dmatrix(data: str | bytes) -> Any:
    raise UnsupportedFormatError(
        f"Content type {RECORDIO_PROTOBUF} is decoded by the XGBoost container's own protobuf reader, "
        "which the in-process runtime does not include; implement input_fn or run the model in a container"
    )


# ---- sagemaker-huggingface-inference-toolkit decoder_encoder.py ----------------------------------

HF_CSV_HEADERS = ("question", "context", "inputs")


def decode_hf_json(data: str | bytes) -> Any:
    return json.loads(data)


def decode_hf_csv(data: str | bytes) -> dict[str, Any]:
    """A CSV with a header naming ``question``, ``context`` or ``inputs``: ``{"inputs": [...]}``, the
    ``inputs`` column's cells, or else each row as a dict."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    if not any(header in text.splitlines()[0].lower() for header in HF_CSV_HEADERS):
        raise ValueError(
            "You need to provide the correct CSV with Header columns to use it with the inference toolkit "
            "default handler."
        )
    rows = list(csv.DictReader(io.StringIO(text)))
    if "inputs" in rows[0]:
        return {"inputs": [row["inputs"] for row in rows]}
    return {"inputs": rows}


class _HfJSONEncoder(json.JSONEncoder):
    """The toolkit's ``_JSONEncoder``: numpy integers and floats, anything with ``tolist``, datetimes."""

    def default(self, o: Any) -> Any:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if hasattr(o, "tolist"):
            return o.tolist()
        if isinstance(o, datetime.datetime):
            return str(o)
        return super().default(o)


def encode_hf_json(prediction: Any) -> str:
    return json.dumps(
        prediction,
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        cls=_HfJSONEncoder,
        separators=(",", ":"),
    )


def encode_hf_csv(prediction: Any) -> str:
    """A pipeline's list of dicts as CSV with a header row (``csv.DictWriter``'s ``\r\n`` line ends)."""
    rows = prediction if isinstance(prediction, list) else list(prediction)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, rows[0].keys())
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---- registries -------------------------------------------------------------------------------

TK_DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {JSON: decode_json, CSV: decode_csv, NPY: decode_npy, NPZ: decode_npz, JSONLINES: decode_jsonlines}
)
TK_ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {JSON: encode_json, CSV: encode_csv, NPY: encode_npy, JSONLINES: encode_jsonlines}
)
CONTAINERS_DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {JSON: decode_json, CSV: decode_csv_rows, NPY: decode_npy, JSONLINES: decode_jsonlines}
)
CONTAINERS_ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {JSON: encode_json, CSV: encode_csv_rows, NPY: encode_npy, JSONLINES: encode_jsonlines}
)
HF_DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {JSON: decode_hf_json, CSV: decode_hf_csv, NPY: decode_npy}
)
HF_ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {JSON: encode_hf_json, CSV: encode_hf_csv, NPY: encode_npy}
)
DMATRIX_DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {
        CSV: decode_csv_dmatrix,
        LIBSVM: decode_libsvm_dmatrix,
        X_LIBSVM: decode_libsvm_dmatrix,
        RECORDIO_PROTOBUF: decode_recordio_dmatrix,
    }
)


def unsupported(content_type: str | None, supported: Mapping[str, Any], hook: str) -> UnsupportedFormatError:
    """The toolkit's 415 text, plus the types the default hook does handle."""
    verb = "decodes" if hook == "input_fn" else "encodes"
    return UnsupportedFormatError(
        f"Content type {content_type} is not supported by this framework. The default {hook} {verb} "
        f"{', '.join(supported)}; implement {hook} for other types.",
        hook=hook,
    )


def decode(data: Any, content_type: str | None, decoders: Mapping[str, Decoder]) -> Any:
    """Exact content-type match, as the toolkits do (``text/csv; charset=utf-8`` is not ``text/csv``)."""
    decoder = decoders.get(content_type) if content_type is not None else None
    if decoder is None:
        raise unsupported(content_type, decoders, "input_fn")
    return decoder(data)


def encode_first(prediction: Any, accept: str, encoders: Mapping[str, Encoder]) -> tuple[str | bytes, str]:
    """Inference toolkit: the first type of the Accept list (spaces removed) that has an encoder."""
    for content_type in accept.replace(" ", "").split(","):
        encoder = encoders.get(content_type)
        if encoder is not None:
            return encoder(prediction), content_type
    raise unsupported(accept, encoders, "output_fn")


def encode_exact(prediction: Any, accept: str, encoders: Mapping[str, Encoder]) -> str | bytes:
    """sagemaker-containers: the whole Accept value must name an encoder."""
    encoder = encoders.get(accept)
    if encoder is None:
        raise unsupported(accept, encoders, "output_fn")
    return encoder(prediction)
