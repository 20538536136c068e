"""The default hooks of each SageMaker image family (``*_DEFAULTS``), built from the toolkits'
decoders and encoders (``codecs.py``); ``handler.py`` picks them by image name. A missing hook
raises the toolkit's own NotImplementedError text.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from runner.model.codecs import (
    CONTAINERS_DECODERS,
    CONTAINERS_ENCODERS,
    DMATRIX_DECODERS,
    TK_DECODERS,
    TK_ENCODERS,
    UTF8_TYPES,
    decode,
    encode_exact,
    encode_first,
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
