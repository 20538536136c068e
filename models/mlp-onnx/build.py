"""Build the bundled example model: a small ONNX MLP classifier, its SageMaker tarball and sample CSV.

    python models/mlp-onnx/build.py [--out-dir models/mlp-onnx] [--sample-rows 1000] [--sample-out PATH]

Writes into ``--out-dir``:
  model.onnx      features [N, 20] float32 -> Gemm 64 -> Relu -> Gemm 64 -> Relu -> Gemm 3 -> Softmax
                  -> probabilities [N, 3] float32 (opset 17, IR 8; weights from a fixed numpy seed)
  model.tar.gz    SageMaker layout: model.onnx and code/inference.py at the archive root
  sample.csv      (or ``--sample-out``) rows of 20 features, no header, ``\\n`` line ends

Everything is deterministic: the same command writes the same bytes (tar entries sorted, mtime 0,
uid/gid 0, gzip header without name or time). Nothing is downloaded.

The CSV rows are standard normal draws times ``FEATURE_SCALE``, written with six decimals (exactly
what ``"%.6f"`` prints for the value). ``FEATURE_SCALE`` is chosen so a row is about 218 bytes:
2,000,000 rows come to about 436 MB. The first layer's weights are divided by the same scale, so
the model sees unit-variance inputs.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import tarfile
from pathlib import Path

import numpy as np

N_FEATURES = 20
HIDDEN_UNITS = (64, 64)
N_CLASSES = 3
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
OPSET = 17  # supported by onnxruntime >= 1.13
IR_VERSION = 8  # the IR version that goes with opset 17; readable by every supported onnxruntime
WEIGHT_SEED = 20240917
SAMPLE_SEED = 7
DEFAULT_SAMPLE_ROWS = 1000
FEATURE_SCALE = 140.0
CALIBRATION_ROWS = 4096
CSV_DECIMALS = 6
CSV_CHUNK_ROWS = 65_536
TAR_FILE_MODE = 0o644
TAR_DIR_MODE = 0o755

HERE = Path(__file__).resolve().parent
INFERENCE_SOURCE = HERE / "code" / "inference.py"


def make_weights(seed: int = WEIGHT_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W [fan_in, fan_out], b [fan_out]) per dense layer, He-initialised, float32.

    The output bias centres each class's logit over a calibration draw of inputs, so all three
    labels occur in about equal numbers.
    """
    rng = np.random.default_rng(seed)
    sizes = (N_FEATURES, *HIDDEN_UNITS, N_CLASSES)
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        std = np.sqrt(2.0 / fan_in)
        if i == 0:
            std /= FEATURE_SCALE  # inputs are N(0, FEATURE_SCALE**2)
        weight = rng.normal(0.0, std, size=(fan_in, fan_out))
        bias = rng.normal(0.0, 0.1, size=fan_out)
        layers.append((weight, bias))
    hidden = rng.standard_normal((CALIBRATION_ROWS, N_FEATURES)) * FEATURE_SCALE
    for weight, bias in layers[:-1]:
        hidden = np.maximum(hidden @ weight + bias, 0.0)
    layers[-1] = (layers[-1][0], -(hidden @ layers[-1][0]).mean(axis=0))
    return [(weight.astype(np.float32), bias.astype(np.float32)) for weight, bias in layers]


def build_model(seed: int = WEIGHT_SEED):  # -> onnx.ModelProto
    """The MLP as an ONNX ModelProto, built with onnx.helper and checked."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = make_weights(seed)
    nodes = []
    initializers = []
    current = INPUT_NAME
    for i, (weight, bias) in enumerate(layers):
        w_name, b_name = f"dense{i}.weight", f"dense{i}.bias"
        initializers += [numpy_helper.from_array(weight, w_name), numpy_helper.from_array(bias, b_name)]
        last = i == len(layers) - 1
        gemm_out = "logits" if last else f"dense{i}.out"
        nodes.append(helper.make_node("Gemm", [current, w_name, b_name], [gemm_out], name=f"dense{i}"))
        if last:
            nodes.append(helper.make_node("Softmax", [gemm_out], [OUTPUT_NAME], name="softmax", axis=-1))
        else:
            current = f"relu{i}.out"
            nodes.append(helper.make_node("Relu", [gemm_out], [current], name=f"relu{i}"))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", N_CLASSES])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="batch-transform models/mlp-onnx/build.py",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=f"MLP {N_FEATURES}-64-64-{N_CLASSES} softmax classifier, weights from seed {seed}",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_model_tarball(model_bytes: bytes, inference_source: bytes, path: Path) -> None:
    """model.onnx and code/inference.py at the archive root, byte-for-byte reproducible."""
    entries: list[tuple[str, bytes | None]] = [
        ("code", None),
        ("code/inference.py", inference_source),
        ("model.onnx", model_bytes),
    ]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(entries):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = TAR_DIR_MODE
                tar.addfile(info)
            else:
                info.mode = TAR_FILE_MODE
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with path.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())


def format_fixed(scaled: np.ndarray, decimals: int, terminators: np.ndarray) -> bytes:
    """Fixed-point numbers as text: ``"%.{decimals}f" % (k / 10**decimals)`` for each integer k.

    ``scaled`` is a 2-D int64 array (rows x columns, |k| < 10**(4 + decimals)); each field is followed
    by ``terminators[column]`` (uint8). Vectorised: every field is laid out right-aligned in a
    fixed-width slot padded with NUL bytes, and the NULs are dropped at the end.
    """
    int_digits = 4
    negative = scaled < 0
    magnitude = np.abs(scaled)
    if magnitude.size and magnitude.max() >= 10 ** (int_digits + decimals):
        raise ValueError(f"values must be below 1e{int_digits} in magnitude to format")
    whole, frac = np.divmod(magnitude, 10**decimals)
    n_digits = 1 + (whole >= 10).astype(np.int64) + (whole >= 100) + (whole >= 1000)
    width = 1 + int_digits + 1 + decimals + 1  # sign, integer digits, point, decimals, terminator
    slots = np.zeros((*scaled.shape, width), dtype=np.uint8)
    for i in range(int_digits):  # slot 1 + i holds the 10**(int_digits - 1 - i) digit
        place = int_digits - 1 - i
        digit = (whole // 10**place) % 10
        slots[..., 1 + i] = np.where(n_digits > place, digit + 48, 0)
    sign_slot = int_digits - n_digits  # just left of the first digit
    for i in range(int_digits):
        slots[..., i] = np.where(negative & (sign_slot == i), ord("-"), slots[..., i])
    slots[..., 1 + int_digits] = ord(".")
    for i in range(decimals):
        slots[..., 2 + int_digits + i] = (frac // 10 ** (decimals - 1 - i)) % 10 + 48
    slots[..., -1] = terminators
    flat = slots.reshape(-1)
    return flat[flat != 0].tobytes()


def make_csv(path: str | Path, rows: int, seed: int = SAMPLE_SEED) -> int:
    """Write ``rows`` CSV rows of N_FEATURES decimals (no header, ``\\n`` ends); return the byte count.

    Values are N(0, FEATURE_SCALE**2) rounded to CSV_DECIMALS and printed as ``"%.6f"`` prints the
    rounded value; the same (rows, seed) gives the same bytes, and a shorter file is a prefix of a
    longer one with the same seed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    terminators = np.full(N_FEATURES, ord(","), dtype=np.uint8)
    terminators[-1] = ord("\n")
    written = 0
    with path.open("wb") as out:
        for start in range(0, rows, CSV_CHUNK_ROWS):
            n = min(CSV_CHUNK_ROWS, rows - start)
            values = rng.standard_normal((CSV_CHUNK_ROWS, N_FEATURES))[:n] * FEATURE_SCALE
            scaled = np.rint(np.clip(values, -9999.0, 9999.0) * 10.0**CSV_DECIMALS).astype(np.int64)
            written += out.write(format_fixed(scaled, CSV_DECIMALS, terminators))
    return written


def build(out_dir: str | Path, seed: int = WEIGHT_SEED) -> tuple[Path, Path]:
    """Write model.onnx and model.tar.gz into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_bytes = build_model(seed).SerializeToString()
    model_path = out_dir / "model.onnx"
    model_path.write_bytes(model_bytes)
    tar_path = out_dir / "model.tar.gz"
    write_model_tarball(model_bytes, INFERENCE_SOURCE.read_bytes(), tar_path)
    return model_path, tar_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where model.onnx and model.tar.gz go")
    parser.add_argument("--sample-rows", type=int, default=DEFAULT_SAMPLE_ROWS, help="CSV rows (0: none)")
    parser.add_argument("--sample-out", type=Path, help="sample CSV path (default: <out-dir>/sample.csv)")
    parser.add_argument("--sample-seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    if args.sample_rows < 0:
        parser.error(f"--sample-rows must be >= 0, got {args.sample_rows}")
    model_path, tar_path = build(args.out_dir)
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes)")
    print(f"wrote {tar_path} ({tar_path.stat().st_size} bytes)")
    if args.sample_rows:
        sample_path = args.sample_out or args.out_dir / "sample.csv"
        size = make_csv(sample_path, args.sample_rows, args.sample_seed)
        print(f"wrote {sample_path} ({args.sample_rows} rows, {size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
