"""A model's SageMaker inference hooks, run in-process with the semantics of its serving image.

``Handler.load`` imports ``<model_dir>/code/<SAGEMAKER_PROGRAM>`` and resolves the hooks the way the
image's toolkit does; ``transform`` then turns one payload into one response body. Two toolkits are
ported (docs/contract.md §5.2):

* aws/sagemaker-inference-toolkit ``transformer.py`` (MMS/TorchServe images: families ``base`` and
  ``pytorch``): hooks may take a trailing ``context`` (the arity rule), the Accept list is searched
  for the first encodable type, a missing Content-Type stays ``None``.
* aws/sagemaker-containers ``_transformer.py`` as used by the scikit-learn and XGBoost images'
  ``serving.py`` (families ``sklearn``, ``xgboost``): hooks get exactly their arguments, Accept must
  name one encodable type, a missing Content-Type means ``application/json``.

User exceptions are re-raised as ``HandlerError`` naming the hook; ``worker.py`` adds the object and
payload index.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import HandlerContractError, HandlerError
from runner.model import codecs, default_hooks
from runner.model.request_context import Context, RequestProcessor

logger = logging.getLogger(__name__)

DEFAULT_PROGRAM = "inference.py"
DEFAULT_ACCEPT = codecs.JSON
CONTAINER_MODEL_DIR = "/opt/ml/model"  # SAGEMAKER_SUBMIT_DIRECTORY is written against the container's paths
TK_CONFLICT = (
    "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, and/or output_fn "
    "implementation"
)
CONTAINERS_CONFLICT = "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"
HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn", "pre_model_fn", "model_warmup_fn")


@dataclass(frozen=True)
class Family:
    """The serving image's toolkit and default hooks."""

    name: str
    markers: tuple[str, ...]  # substrings of the image repository name
    defaults: Mapping[str, Callable[..., Any]]
    inference_toolkit: bool  # True: sagemaker-inference-toolkit; False: sagemaker-containers
    conflict: str


BASE = Family("base", (), default_hooks.TK_DEFAULTS, True, TK_CONFLICT)
# The sagemaker-xgboost image without SAGEMAKER_PROGRAM: the built-in algorithm, no script at all.
XGBOOST_ALGORITHM = Family("xgboost-algorithm", (), default_hooks.XGB_ALGORITHM_DEFAULTS, True, TK_CONFLICT)
FAMILIES = (
    Family(
        "sklearn", ("sagemaker-scikit-learn",), default_hooks.SKLEARN_DEFAULTS, False, CONTAINERS_CONFLICT
    ),
    Family("xgboost", ("sagemaker-xgboost",), default_hooks.XGBOOST_DEFAULTS, False, CONTAINERS_CONFLICT),
    # Before pytorch: huggingface-pytorch-inference holds "pytorch-inference" too.
    Family(
        "huggingface",
        ("huggingface-pytorch-inference", "huggingface-tensorflow-inference"),
        default_hooks.HF_DEFAULTS,
        True,
        TK_CONFLICT,
    ),
    Family("pytorch", ("pytorch-inference",), default_hooks.TORCH_DEFAULTS, True, TK_CONFLICT),
    # Served by TensorFlow Serving, not by hooks: Handler.load refuses it.
    Family(
        "tensorflow",
        ("tensorflow-inference", "tensorflow-serving"),
        default_hooks.TK_DEFAULTS,
        True,
        TK_CONFLICT,
    ),
)


def family_for_image(image: str | None) -> Family:
    """The family named by the image's repository (registry and tag ignored); unknown ⇒ base."""
    if not image:
        return BASE
    repository = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    for family in FAMILIES:
        if any(marker in repository for marker in family.markers):
            return family
    return BASE


# ---- calling hooks ------------------------------------------------------------------------------

# Modules real scripts import that a job's environment may lack, and what the user can do about each.
# sagemaker-containers was split into sagemaker-training and sagemaker-inference (the latter's README
# calls itself "the serving subset of the SageMaker Containers library"); its last release is 2020's.
FRAMEWORKS_HINT = "pip install 'batch-transform-runner[frameworks]' where the job runs"
MISSING_MODULE_ADVICE = {
    "sagemaker_containers": (
        "sagemaker_containers (sagemaker-containers) is retired and not installed here; its serving "
        "part lives on as sagemaker_inference. Change the script's `from sagemaker_containers.beta."
        "framework import encoders` to `from sagemaker_inference import encoder, decoder` "
        "(encoders.encode -> encoder.encode, encoders.decode -> decoder.decode), and a returned "
        "worker.Response(body, mimetype=accept) to the tuple (body, accept) or a flask.Response; "
        f"sagemaker_inference comes with {FRAMEWORKS_HINT}"
    ),
    "sagemaker_inference": f"sagemaker_inference (sagemaker-inference) comes with {FRAMEWORKS_HINT}, "
    "or list sagemaker-inference in the model's code/requirements.txt",
    "flask": f"flask comes with {FRAMEWORKS_HINT}, or list flask in the model's code/requirements.txt",
}


def _advice(error: BaseException) -> str:
    """What to change, for an import of a module the SageMaker images have and this environment lacks."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        advice = MISSING_MODULE_ADVICE.get(error.name.split(".")[0])
        if advice:
            return f". {advice}"
    return ""


def _wrap(hook: str, error: BaseException) -> HandlerError:
    kind = type(error) if isinstance(error, HandlerError) else HandlerError
    return kind(
        f"{hook} raised {type(error).__name__}: {str(error).strip()}{_advice(error)}",
        hook=hook,
        traceback_text="".join(traceback.format_exception(error)),
    )


@dataclass(frozen=True)
class Hook:
    """A resolved hook: the callable, the name errors use, and whether it takes the context."""

    name: str
    fn: Callable[..., Any]
    context: bool = False

    def __call__(self, context: Context | None, *args: Any) -> Any:
        try:
            return self.fn(*args, context) if self.context else self.fn(*args)
        except Exception as e:
            raise _wrap(self.name, e) from e


def _bind(name: str, fn: Callable[..., Any], n: int, toolkit: bool) -> Hook:
    """The inference toolkit's arity rule (``_run_handler_function``), decided once at load."""
    if not toolkit:
        return Hook(name, fn)  # sagemaker-containers calls hooks with exactly their arguments
    try:
        k = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return Hook(name, fn)  # no introspectable signature (a builtin): call it plainly
    if k == n:
        return Hook(name, fn)
    if k == n + 1:
        return Hook(name, fn, context=True)
    fn_name = getattr(fn, "__name__", name)
    raise HandlerContractError(f"{fn_name} takes {k} arguments but {n} were given.", hook=name)


def _response_bytes(hook: str, value: Any) -> bytes:
    """What the model server sends for a hook's result: bytes as is, str UTF-8, else JSON (MMS)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return json.dumps(value, indent=2).encode("utf-8")
    except TypeError as e:
        raise HandlerContractError(
            f"{hook} returned {type(value).__name__}, which is not a response body; return bytes or str "
            "(the model server answers 'Unsupported model output data type.')",
            hook=hook,
        ) from e


def _is_http_response(value: Any) -> bool:
    """A Flask/werkzeug ``Response`` (duck-typed: the runner does not need Flask to recognise one)."""
    return callable(getattr(value, "get_data", None)) and isinstance(getattr(value, "status_code", None), int)


def _http_response_body(hook: str, response: Any) -> tuple[bytes, str]:
    """What the scikit-learn and XGBoost images' Flask server sends for a ``Response`` a hook returns
    (sagemaker-containers hands it back as the HTTP answer): its body and content type, or, for an
    error status, the failed invocation that SageMaker reports."""
    body = bytes(response.get_data())
    status = response.status_code
    if not 200 <= status < 300:
        text = body[:512].decode("utf-8", errors="replace")
        raise HandlerError(f"{hook} returned an HTTP {status} response: {text}", hook=hook)
    return body, str(response.content_type or response.mimetype or "")


# ---- loading the user module --------------------------------------------------------------------


def _code_dir(model_dir: Path, environ: Mapping[str, str]) -> Path:
    """``SAGEMAKER_SUBMIT_DIRECTORY`` when it names a local directory (``/opt/ml/model/...`` is read
    inside ``model_dir``; ``s3://`` sources are not local), else ``<model_dir>/code``."""
    submit = environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "").removeprefix("file://")
    if submit and "://" not in submit:
        path = Path(submit)
        if submit == CONTAINER_MODEL_DIR or submit.startswith(CONTAINER_MODEL_DIR + "/"):
            path = model_dir / submit[len(CONTAINER_MODEL_DIR) :].lstrip("/")
        if path.is_dir():
            return path
    return model_dir / "code"


def _module_file(code_dir: Path, program: str) -> Path | None:
    name = program.removesuffix(".py")
    for candidate in (code_dir / f"{name}.py", code_dir / name / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _import(path: Path, code_dir: Path) -> ModuleType:
    """Execute the user module under a name unique to its file, so two models' ``inference.py`` in one
    process do not replace each other; its folder goes on ``sys.path`` for its own imports."""
    is_package = path.name == "__init__.py"
    stem = path.parent.name if is_package else path.stem
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    unique = f"runner_user_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location(
        unique, path, submodule_search_locations=[str(path.parent)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise HandlerError(f"import of {path} failed: not a Python module", hook="import")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses and pickle look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(unique, None)
        raise HandlerError(
            f"import of {path} raised {type(e).__name__}: {e}{_advice(e)}",
            hook="import",
            traceback_text="".join(traceback.format_exception(e)),
        ) from e
    return module


def _user_hooks(module: ModuleType | None, path: Path | None) -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for name in (*HOOKS, "execution_parameters_fn"):
        value = getattr(module, name, None) if module is not None else None
        if value is None:
            continue  # the toolkits test truthiness: `input_fn = None` means no input_fn
        if not callable(value):
            raise HandlerContractError(
                f"{name} in {path} is a {type(value).__name__}, not a function", hook=name
            )
        found[name] = value
    return found


# ---- the handler --------------------------------------------------------------------------------


class Handler:
    """One model's hooks, resolved once; ``load_model`` once, then ``transform`` per payload."""

    def __init__(
        self,
        family: Family,
        model_dir: Path,
        module_path: Path | None,
        hooks: Mapping[str, Hook],
        execution_parameters_fn: Callable[[], Any] | None,
        default_accept: str,
        gpu_id: int | None,
    ) -> None:
        self.family = family.name
        self.module_path = module_path
        self.model_dir = model_dir
        self.user_hooks = tuple(
            sorted(name for name, hook in hooks.items() if hook.fn is not family.defaults.get(name))
        )
        self._family = family
        self._hooks = dict(hooks)
        self._execution_parameters_fn = execution_parameters_fn
        self._default_accept = default_accept
        self._system_properties: dict[str, Any] = {
            "model_dir": str(model_dir),
            "gpu_id": gpu_id,
            "batch_size": 1,
            "server_name": "TorchServe" if family.name == "pytorch" else "MMS",
            "limit_max_image_pixels": True,
        }
        self._model: Any = None
        self._loaded = False

    @classmethod
    def load(
        cls, model_dir: Path, *, image: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Handler:
        env: Mapping[str, str] = dict(os.environ) if environ is None else environ
        model_dir = Path(model_dir)
        family = family_for_image(image)
        if family.name == "tensorflow":
            raise HandlerContractError(
                f"image {image} serves SavedModels through TensorFlow Serving (inference.py's input_handler/"
                "output_handler wrap its REST call), which the in-process runtime cannot run; run the model "
                "in its container",
                hook="import",
            )
        program = env.get("SAGEMAKER_PROGRAM")
        code_dir = _code_dir(model_dir, env)
        module_path = _module_file(code_dir, program or DEFAULT_PROGRAM)
        if family.name == "xgboost" and not program:
            # The image serves the built-in algorithm unless SAGEMAKER_PROGRAM names a script (its
            # serving.py: ServingEnv.module_name is None); a code/inference.py is not imported there.
            family, module_path = XGBOOST_ALGORITHM, None
        module = _import(module_path, code_dir) if module_path is not None else None
        user = _user_hooks(module, module_path)
        if "transform_fn" in user and user.keys() & {"input_fn", "predict_fn", "output_fn"}:
            raise HandlerContractError(family.conflict, hook="transform_fn")

        toolkit = family.inference_toolkit
        resolved = {**family.defaults, **{k: v for k, v in user.items() if k in HOOKS}}
        arities = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}
        if toolkit:  # inference toolkit >= 1.6; sagemaker-containers has no such hooks
            arities.update(pre_model_fn=1, model_warmup_fn=2)
        if "transform_fn" in user:
            arities = {k: n for k, n in arities.items() if k not in ("input_fn", "predict_fn", "output_fn")}
        # The defaults take exactly their arguments; only the user's hooks go through the arity rule.
        hooks = {
            name: _bind(name, resolved[name], n, toolkit and name in user)
            for name, n in arities.items()
            if name in resolved
        }
        visible = env.get("CUDA_VISIBLE_DEVICES", "")
        return cls(
            family,
            model_dir,
            module_path,
            hooks,
            user.get("execution_parameters_fn"),
            # The HuggingFace toolkit answers JSON to a missing or */* Accept, whatever the environment.
            DEFAULT_ACCEPT
            if family.name == "huggingface"
            else env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", DEFAULT_ACCEPT),
            0 if visible and visible != "-1" else None,  # a Ray worker sees its own GPU as device 0
        )

    def _context(self, headers: dict[str, str] | None = None) -> Context | None:
        if not self._family.inference_toolkit:
            return None
        return Context(self._system_properties, None if headers is None else [RequestProcessor(headers)])

    def load_model(self) -> None:
        """``pre_model_fn``, ``model_fn``, ``model_warmup_fn``; once per Handler."""
        if self._loaded:
            return
        context, model_dir = self._context(), str(self.model_dir)
        if "pre_model_fn" in self._hooks:
            self._hooks["pre_model_fn"](context, model_dir)
        model = self._hooks["model_fn"](context, model_dir)
        if "model_warmup_fn" in self._hooks:
            self._hooks["model_warmup_fn"](context, model_dir, model)
        self._model, self._loaded = model, True

    def transform(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """One payload through ``transform_fn`` or ``input_fn -> predict_fn -> output_fn``:
        the response body and its content type."""
        if not self._loaded:
            self.load_model()
        headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}
        toolkit = self._family.inference_toolkit
        if content_type is None and not toolkit:
            content_type = codecs.JSON  # sagemaker-containers' Request.content_type default
        if not accept or accept == codecs.ANY:
            accept = self._default_accept
        transform_fn = self._hooks.get("transform_fn")
        last = "transform_fn" if transform_fn is not None else "output_fn"
        data: Any = body if isinstance(body, bytes) else bytes(body)
        if content_type in codecs.UTF8_TYPES:
            try:
                data = data.decode("utf-8") if toolkit else data.decode("utf-8", errors="replace")
            except UnicodeDecodeError as e:
                first = "transform_fn" if transform_fn is not None else "input_fn"
                raise HandlerError(
                    f"the {content_type} request body is not UTF-8 text: {e}", hook=first
                ) from e
        context = self._context(headers)
        if transform_fn is not None:
            result = transform_fn(context, self._model, data, content_type, accept)
        else:
            decoded = self._hooks["input_fn"](context, data, content_type)
            prediction = self._hooks["predict_fn"](context, decoded, self._model)
            result = self._hooks["output_fn"](context, prediction, accept)
        response_type: Any = accept
        if not toolkit and _is_http_response(result):
            return _http_response_body(last, result)
        if isinstance(result, tuple):  # (data, content_type) sets the response content type
            if len(result) < 2:
                raise HandlerContractError(
                    f"{last} returned a tuple of {len(result)}; expected (data, content_type)", hook=last
                )
            result, response_type = result[0], result[1]
        return _response_bytes(last, result), str(response_type)

    def execution_parameters(self) -> Any:
        """What the user's ``execution_parameters_fn()`` answers, as decoded JSON (the raw text when it
        is not JSON); ``None`` when there is none, it raises, or it answers a status other than 200 (a
        failing /execution-parameters is ignored). What of it is usable is for
        runner/contract/parameters.py to say."""
        fn = self._execution_parameters_fn
        if fn is None:
            return None
        try:
            result = fn()
        except Exception as e:
            logger.warning("execution_parameters_fn raised %s: %s; using the defaults", type(e).__name__, e)
            return None
        status = 200
        if isinstance(result, tuple) and len(result) >= 2:  # a Flask view's (body, status)
            result, status = result[0], result[1]
        if _is_http_response(result):  # a Flask/werkzeug Response, as sklearn scripts return
            status = getattr(result, "status_code", 200)
            result = result.get_data()
        if status != 200:
            logger.warning("execution_parameters_fn answered status %s; using the defaults", status)
            return None
        if isinstance(result, (str, bytes, bytearray)):
            try:
                return json.loads(result)
            except (ValueError, UnicodeDecodeError):
                return result
        return result
