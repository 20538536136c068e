"""The default hooks of each SageMaker image family (``*_DEFAULTS``), built from the toolkits'
decoders and encoders (``codecs.py``); ``handler.py`` picks them by image name. A missing hook
raises the toolkit's own NotImplementedError text.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import textwrap
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from runner.errors import HandlerError, UnsupportedFormatError
from runner.extras import require
from runner.model.codecs import (
    CONTAINERS_DECODERS,
    CONTAINERS_ENCODERS,
    DMATRIX_DECODERS,
    HF_DECODERS,
    HF_ENCODERS,
    TK_DECODERS,
    TK_ENCODERS,
    UTF8_TYPES,
    decode,
    decode_recordio_dmatrix,
    encode_exact,
    encode_first,
    xgboost_module,
)


def missing(hook: str, docs: str) -> Callable[..., Any]:
    def default(*args: Any) -> Any:
        raise NotImplementedError(
            textwrap.dedent(
                f"""
                Please provide a {hook} implementation.
                See documentation for {hook} at {docs}
                """
            )
        )

    default.__name__ = f"default_{hook}"
    return default


TK_DOCS = "https://sagemaker.readthedocs.io/en/stable/"
CONTAINERS_DOCS = "https://github.com/aws/sagemaker-python-sdk"


def tk_input_fn(data: Any, content_type: str | None) -> Any:
    return decode(data, content_type, TK_DECODERS)


def tk_output_fn(prediction: Any, accept: str) -> tuple[str | bytes, str]:
    return encode_first(prediction, accept, TK_ENCODERS)


def sklearn_input_fn(data: Any, content_type: str | None) -> Any:
    array = decode(data, content_type, CONTAINERS_DECODERS)
    return array.astype(np.float32) if content_type in UTF8_TYPES else array


def estimator_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def containers_output_fn(prediction: Any, accept: str) -> tuple[str | bytes, str]:
    return encode_exact(prediction, accept, CONTAINERS_ENCODERS), accept


def xgboost_input_fn(data: Any, content_type: str | None) -> Any:
    media_type = (content_type or "").split(";", 1)[0].strip()  # cgi.parse_header in the container
    return decode(data, media_type, DMATRIX_DECODERS)


def xgboost_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data, validate_features=False)


def _torch_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_model_fn(model_dir: str) -> Any:
    import torch

    path = os.path.join(model_dir, "model.pt")
    if not os.path.exists(path):
        # The toolkit tests os.path.isfile(name) against the working directory; model_dir is meant.
        files = [
            f
            for f in os.listdir(model_dir)
            if f.endswith((".pt", ".pth")) and os.path.isfile(os.path.join(model_dir, f))
        ]
        if len(files) != 1:
            raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: {files}")
        path = os.path.join(model_dir, files[0])
    try:
        model = torch.jit.load(path, map_location=_torch_device())
    except RuntimeError as e:
        raise RuntimeError(f"Failed to load {path}. Please ensure model is saved using torchscript.") from e
    return model.to(_torch_device())


def torch_input_fn(data: Any, content_type: str | None) -> Any:
    import torch

    array = decode(data, content_type, TK_DECODERS)
    tensor = torch.FloatTensor(array) if content_type in UTF8_TYPES else torch.from_numpy(array)
    return tensor.to(_torch_device())


def torch_predict_fn(data: Any, model: Any) -> Any:
    import torch

    with torch.no_grad():
        model = model.to(_torch_device())
        model.eval()
        return model(data.to(_torch_device()))


def torch_output_fn(prediction: Any, accept: str) -> str | bytes:
    import torch

    if type(prediction) is torch.Tensor:
        prediction = prediction.detach().cpu().numpy().tolist()
    encoded, _ = encode_first(prediction, accept, TK_ENCODERS)
    return encoded  # no content type: the response keeps the whole Accept value, as in the toolkit


# ---- the built-in XGBoost algorithm (sagemaker-xgboost without SAGEMAKER_PROGRAM) ---------------
# aws/sagemaker-xgboost-container algorithm_mode/handler_service.py (DefaultXGBoostAlgoModeInferenceHandler)
# and serve_utils.py (get_loaded_booster, parse_content_data, predict); its Transformer hands the hooks
# the raw body and no context.

XGB_ALGORITHM_TYPES = ("text/csv", "text/libsvm", "text/x-libsvm", "application/x-recordio-protobuf")


def xgb_algorithm_model_fn(model_dir: str) -> Any:
    """Every file of the model folder (``xgboost-model`` from a training job), each unpickled or, failing
    that, read by ``Booster.load_model``; several are an ensemble whose predictions are averaged."""
    xgb = xgboost_module("the built-in XGBoost algorithm")
    boosters = []
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            continue  # code/, and the runner's own folders
        try:
            with open(path, "rb") as f:
                booster = pickle.load(f)
        except Exception as exp_pkl:
            try:
                booster = xgb.Booster()
                booster.load_model(path)
            except Exception as exp_xgb:
                raise HandlerError(
                    f"Unable to load model: Model at {path} cannot be loaded:\n{exp_pkl}\n{exp_xgb}",
                    hook="model_fn",
                ) from None
        # The container sets one thread per booster (a model server worker per vCPU); a Ray worker
        # has its CPU share instead.
        booster.set_param("nthread", int(os.environ.get("OMP_NUM_THREADS", "1")))
        boosters.append(booster)
    if not boosters:
        raise HandlerError(f"Unable to load model: no model file in {model_dir}", hook="model_fn")
    return boosters


def _libsvm_matrix(text: str) -> Any:
    """serve_utils ``_get_sparse_matrix_from_libsvm``: ``index:value`` tokens at their own 0-based
    column (a leading label, which has no colon, is ignored)."""
    sparse = require("scipy.sparse", "npz", "decoding text/libsvm for the built-in XGBoost algorithm")
    rows, cols, values = [], [], []
    for row, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                column, value = item.split(":")[:2]
                rows.append(row)
                cols.append(int(column))
                values.append(float(value))
    return sparse.csr_matrix((np.array(values), (np.array(rows), np.array(cols))))


def xgb_algorithm_input_fn(data: Any, content_type: str | None) -> Any:
    """``parse_content_data``: the payload stripped of leading and trailing whitespace, then CSV
    (delimiter sniffed, empty cells NaN), LIBSVM or RecordIO-protobuf into a DMatrix."""
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(body) == 0:
        raise HandlerError("No content in the request body (the algorithm answers 204)", hook="input_fn")
    media = (content_type or "text/csv").lower().split(";")[0].strip()
    if media not in XGB_ALGORITHM_TYPES:
        raise UnsupportedFormatError(
            f"Content-type {media} not supported. Supported content-type is text/csv, text/libsvm, "
            "application/x-recordio-protobuf",
            hook="input_fn",
        )
    xgb = xgboost_module("the built-in XGBoost algorithm")
    if media == "application/x-recordio-protobuf":
        return decode_recordio_dmatrix(body), media
    text = body.strip().decode("utf-8")
    try:
        if media == "text/csv":
            sniffed = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
            delimiter = "," if sniffed.isalnum() else sniffed
            cells = [["nan" if c == "" else c for c in line.split(delimiter)] for line in text.split("\n")]
            return xgb.DMatrix(np.array(cells).astype(float)), media
        return xgb.DMatrix(_libsvm_matrix(text)), media
    except Exception as e:
        kind = "csv" if media == "text/csv" else "libsvm"
        raise HandlerError(
            f"Loading {kind} data failed with Exception, please ensure data is in {kind} format:\n "
            f"{type(e)}\n {e}",
            hook="input_fn",
        ) from e


def xgb_algorithm_predict_fn(data: Any, model: Any) -> Any:
    """``serve_utils.predict``: each booster over the DMatrix, averaged when there are several."""
    dtest, _ = data
    predictions = [booster.predict(dtest, validate_features=False) for booster in model]
    return predictions[0] if len(predictions) == 1 else np.mean(predictions, axis=0)


def xgb_algorithm_output_fn(prediction: Any, accept: str) -> bytes:
    """``default_output_fn`` in a batch transform (SAGEMAKER_BATCH set): CSV is one prediction per line
    (``str`` of each value), JSON the toolkit's encoder (``json.dumps`` of the list)."""
    accept_type = accept.lower()
    if accept_type in ("text/csv", "csv"):
        return ("\n".join(map(str, prediction.tolist())) + "\n").encode("utf-8")
    if accept_type in ("application/json", "json"):
        return json.dumps(prediction.tolist()).encode("utf-8")
    raise UnsupportedFormatError(
        f"Encoding to accept type {accept} failed with exception: {accept} is not an accepted Accept type. "
        "Please choose one of the following: ['text/csv', 'application/json'].",
        hook="output_fn",
    )


XGB_ALGORITHM_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "model_fn": xgb_algorithm_model_fn,
        "input_fn": xgb_algorithm_input_fn,
        "predict_fn": xgb_algorithm_predict_fn,
        "output_fn": xgb_algorithm_output_fn,
    }
)

# ---- HuggingFace (sagemaker-huggingface-inference-toolkit handler_service.py) ---------------------
# load / preprocess / predict / postprocess, which a script's model_fn / input_fn / predict_fn /
# output_fn replace one by one.


def hf_model_fn(model_dir: str) -> Any:
    """``load``: a transformers pipeline for ``HF_TASK`` over the model folder."""
    task = os.environ.get("HF_TASK")
    if not task:
        raise HandlerError(
            "You need to define the task as env 'HF_TASK' (or a model_fn in code/inference.py): the "
            "image's default model_fn builds a transformers pipeline for it",
            hook="model_fn",
        )
    try:
        from transformers import pipeline
    except ImportError as e:
        raise HandlerError(
            f"HF_TASK={task}: the image's default model_fn builds a transformers pipeline, and "
            "transformers is not installed where the workers run; install transformers (and torch), or "
            "give code/inference.py a model_fn",
            hook="model_fn",
        ) from e
    return pipeline(task=task, model=model_dir, tokenizer=model_dir, device=-1)


def hf_input_fn(data: Any, content_type: str | None) -> Any:
    return decode(data, content_type, HF_DECODERS)


def hf_predict_fn(data: Any, model: Any) -> Any:
    """``predict``: the pipeline called on ``data["inputs"]`` (else the whole document), with
    ``data["parameters"]`` as keyword arguments."""
    inputs = data.pop("inputs", data)
    parameters = data.pop("parameters", None)
    return model(inputs, **parameters) if parameters is not None else model(inputs)


def hf_output_fn(prediction: Any, accept: str) -> str | bytes:
    return encode_exact(prediction, accept, HF_ENCODERS)


HF_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {"model_fn": hf_model_fn, "input_fn": hf_input_fn, "predict_fn": hf_predict_fn, "output_fn": hf_output_fn}
)

TK_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "model_fn": missing("model_fn", TK_DOCS),
        "input_fn": tk_input_fn,
        "predict_fn": missing("predict_fn", TK_DOCS),
        "output_fn": tk_output_fn,
    }
)
SKLEARN_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "model_fn": missing("model_fn", CONTAINERS_DOCS),
        "input_fn": sklearn_input_fn,
        "predict_fn": estimator_predict_fn,
        "output_fn": containers_output_fn,
    }
)
XGBOOST_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {**SKLEARN_DEFAULTS, "input_fn": xgboost_input_fn, "predict_fn": xgboost_predict_fn}
)
TORCH_DEFAULTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "model_fn": torch_model_fn,
        "input_fn": torch_input_fn,
        "predict_fn": torch_predict_fn,
        "output_fn": torch_output_fn,
    }
)
