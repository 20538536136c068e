"""In-process hooks with the toolkits' semantics: what a user's inference.py sees and what comes back."""

from __future__ import annotations

import importlib.util
import io
import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from runner.errors import HandlerContractError, HandlerError, UnsupportedFormatError
from runner.model import codecs
from runner.model.handler import Handler, family_for_image

SUM_MODEL = """
import numpy

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    return numpy.atleast_2d(data).sum(axis=1)
"""
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def model_dir(root: Path, code: str | None, name: str = "inference.py") -> Path:
    """A SageMaker model folder; ``code`` (if any) becomes code/<name>."""
    (root / "code").mkdir(parents=True, exist_ok=True)
    if code is not None:
        (root / "code" / name).write_text(textwrap.dedent(code))
    return root


def loaded(
    root: Path, code: str | None, image: str | None = None, environ: dict[str, str] | None = None
) -> Handler:
    handler = Handler.load(model_dir(root, code), image=image, environ=environ)
    handler.load_model()
    return handler


# ---- docs/contract.md §8 worked examples ---------------------------------------------------------------


def test_example_1_csv_multirecord(tmp_path: Path) -> None:
    # The toolkit decodes CSV with genfromtxt(dtype=None): integer-only rows stay int64.
    handler = loaded(tmp_path, SUM_MODEL, environ={})
    assert handler.family == "base"
    assert handler.transform(b"1,2,3\n4,5,6\n7,8,9\n", "text/csv", "text/csv") == (
        b"6\n15\n24\n",
        "text/csv",
    )


@pytest.mark.parametrize(
    ("record", "expected"), [(b"1,2,3\n", b"[6]"), (b"4,5,6\n", b"[15]"), (b"7,8,9\n", b"[24]")]
)
def test_example_2_single_record_json(tmp_path: Path, record: bytes, expected: bytes) -> None:
    handler = loaded(tmp_path, SUM_MODEL, image="batch-transform/test:latest", environ={})
    assert handler.transform(record, "text/csv", "application/json") == (expected, "application/json")


# ---- hook resolution ---------------------------------------------------------------------------

CONTEXT_MODEL = """
import numpy

def model_fn(model_dir, context):
    return {"dir": model_dir, "load_ctx_dir": context.system_properties["model_dir"]}

def input_fn(body, content_type, context):
    headers = context.request_processor[0].get_request_properties()
    accept = context.get_request_header(0, "Accept")
    return {"body": body, "ct": content_type, "accept": accept, "headers": headers}

def predict_fn(data, model, context):
    return {**data, "model": model, "ctx_dir": context.system_properties["model_dir"]}

def output_fn(prediction, accept):
    return __import__("json").dumps(prediction), "application/x-debug"
"""


def test_context_arity_passes_context_only_to_hooks_with_one_more_argument(tmp_path: Path) -> None:
    handler = loaded(tmp_path, CONTEXT_MODEL, environ={})
    body, content_type = handler.transform(b"1,2", "text/csv", "*/*")
    out = json.loads(body)
    assert content_type == "application/x-debug"
    assert out["body"] == "1,2" and out["ct"] == "text/csv" and out["accept"] == "*/*"
    assert out["headers"] == {"Content-Type": "text/csv", "Accept": "*/*"}
    assert out["model"] == {"dir": str(tmp_path), "load_ctx_dir": str(tmp_path)}
    assert out["ctx_dir"] == str(tmp_path)


def test_context_arity_too_many_arguments_is_a_contract_error(tmp_path: Path) -> None:
    code = SUM_MODEL.replace("def predict_fn(data, model):", "def predict_fn(data, model, context, extra):")
    with pytest.raises(HandlerContractError, match=r"^predict_fn takes 4 arguments but 2 were given\.$") as e:
        Handler.load(model_dir(tmp_path, code), environ={})
    assert e.value.hook == "predict_fn"


def test_context_arity_counts_defaulted_parameters(tmp_path: Path) -> None:
    # The toolkit counts every parameter: a defaulted third one receives the context.
    code = SUM_MODEL + "\ndef output_fn(prediction, accept, extra=None):\n    return type(extra).__name__\n"
    handler = loaded(tmp_path, code, environ={})
    assert handler.transform(b"1,2\n", "text/csv", None) == (b"Context", "application/json")


TRANSFORM_MODEL = """
def model_fn(model_dir):
    return "m"

def transform_fn(model, body, content_type, accept):
    return f"{model}|{body!r}|{content_type}|{accept}"
"""


def test_transform_fn_alone_gets_the_raw_request(tmp_path: Path) -> None:
    handler = loaded(tmp_path, TRANSFORM_MODEL, environ={})
    assert handler.transform(b"\x00\x01", "application/octet-stream", "text/plain") == (
        b"m|b'\\x00\\x01'|application/octet-stream|text/plain",
        "text/plain",
    )
    assert handler.transform(b"a,b", "text/csv", None)[0] == b"m|'a,b'|text/csv|application/json"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            None,
            "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
            "and/or output_fn implementation",
        ),
        (SKLEARN_IMAGE, "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"),
    ],
)
def test_transform_fn_with_input_fn_is_rejected(tmp_path: Path, image: str | None, message: str) -> None:
    code = TRANSFORM_MODEL + "\ndef input_fn(body, content_type):\n    return body\n"
    with pytest.raises(HandlerContractError) as e:
        Handler.load(model_dir(tmp_path, code), image=image, environ={"SAGEMAKER_PROGRAM": "inference.py"})
    assert str(e.value) == message and e.value.hook == "transform_fn"


def test_missing_module_means_toolkit_defaults(tmp_path: Path) -> None:
    handler = Handler.load(model_dir(tmp_path, None), environ={})
    assert handler.module_path is None and handler.user_hooks == ()
    with pytest.raises(HandlerError) as e:
        handler.load_model()
    assert e.value.hook == "model_fn"
    assert str(e.value).startswith(
        "model_fn raised NotImplementedError: Please provide a model_fn implementation."
    )
    assert "https://sagemaker.readthedocs.io/en/stable/" in str(e.value)


def test_default_predict_fn_raises_not_implemented(tmp_path: Path) -> None:
    handler = loaded(tmp_path, "def model_fn(model_dir):\n    return None\n", environ={})
    with pytest.raises(HandlerError) as e:
        handler.transform(b"1,2\n", "text/csv", "text/csv")
    assert e.value.hook == "predict_fn"
    assert "predict_fn raised NotImplementedError: Please provide a predict_fn implementation." in str(
        e.value
    )
    assert isinstance(e.value.__cause__, NotImplementedError)


@pytest.mark.parametrize("program", ["serve.py", "serve"])
def test_sagemaker_program_picks_the_module(tmp_path: Path, program: str) -> None:
    model_dir(tmp_path, "raise RuntimeError('not me')\n")
    model_dir(tmp_path, TRANSFORM_MODEL, name="serve.py")
    handler = loaded(tmp_path, None, environ={"SAGEMAKER_PROGRAM": program})
    assert handler.module_path == tmp_path / "code" / "serve.py"
    assert handler.user_hooks == ("model_fn", "transform_fn")


def test_submit_directory_inside_the_model_is_read_from_model_dir(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(TRANSFORM_MODEL)
    env = {"SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/src", "SAGEMAKER_PROGRAM": "entry.py"}
    handler = Handler.load(tmp_path, environ=env)
    assert handler.module_path == tmp_path / "src" / "entry.py"
    env["SAGEMAKER_SUBMIT_DIRECTORY"] = "s3://bucket/sourcedir.tar.gz"  # not local: <model_dir>/code
    assert Handler.load(tmp_path, environ=env).module_path is None


def test_import_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(HandlerError) as e:
        Handler.load(model_dir(tmp_path, "def model_fn(:\n"), environ={})
    assert e.value.hook == "import" and "SyntaxError" in str(e.value)
    assert str(tmp_path / "code" / "inference.py") in str(e.value)
    with pytest.raises(HandlerError, match="ModuleNotFoundError: No module named 'no_such_module_xyz'"):
        Handler.load(model_dir(tmp_path / "b", "import no_such_module_xyz\n"), environ={})


def test_user_module_imports_its_siblings_and_two_models_do_not_clash(tmp_path: Path) -> None:
    hooks = "def model_fn(d):\n    return None\ndef transform_fn(m, b, c, a):\n    return VALUE\n"
    a = model_dir(tmp_path / "a", "from helper_a import VALUE\n" + hooks)
    (a / "code" / "helper_a.py").write_text("VALUE = 'a'\n")
    b = model_dir(tmp_path / "b", "VALUE = 'b'\n" + hooks)
    ha, hb = loaded(a, None, environ={}), loaded(b, None, environ={})
    assert ha.transform(b"", None, None)[0] == b"a" and hb.transform(b"", None, None)[0] == b"b"


LOAD_ORDER_MODEL = """
from pathlib import Path

def _log(model_dir, line):
    with open(Path(model_dir) / "calls.log", "a") as f:
        f.write(line + "\\n")

def pre_model_fn(model_dir):
    _log(model_dir, "pre_model_fn")

def model_fn(model_dir):
    _log(model_dir, "model_fn")
    return "the-model"

def model_warmup_fn(model_dir, model):
    _log(model_dir, "model_warmup_fn " + model)

def transform_fn(model, body, content_type, accept):
    return model
"""


def test_model_is_loaded_once_across_payloads(tmp_path: Path) -> None:
    handler = Handler.load(model_dir(tmp_path, LOAD_ORDER_MODEL), environ={})
    handler.load_model()
    handler.load_model()
    for _ in range(25):
        assert handler.transform(b"x", "text/csv", None) == (b"the-model", "application/json")
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == ["pre_model_fn", "model_fn", "model_warmup_fn the-model"]


def test_transform_loads_the_model_when_not_yet_loaded(tmp_path: Path) -> None:
    handler = Handler.load(model_dir(tmp_path, LOAD_ORDER_MODEL), environ={})
    handler.transform(b"x", "text/csv", None)
    handler.transform(b"x", "text/csv", None)
    assert (tmp_path / "calls.log").read_text().count("\nmodel_fn\n") == 1


# ---- request and response handling -------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "", "*/*"])
@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (b"[3]", "application/json")),
        ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}, (b"3\n", "text/csv")),
    ],
)
def test_missing_or_any_accept_uses_the_default(
    tmp_path: Path, accept: str | None, environ: dict[str, str], expected: tuple[bytes, str]
) -> None:
    handler = loaded(tmp_path, SUM_MODEL, environ=environ)
    assert handler.transform(b"1,2\n", "text/csv", accept) == expected


def test_accept_list_first_supported_type_wins(tmp_path: Path) -> None:
    handler = loaded(tmp_path, SUM_MODEL, environ={})
    assert handler.transform(b"1,2\n", "text/csv", "text/plain, text/csv,application/json") == (
        b"3\n",
        "text/csv",
    )


def test_output_fn_tuple_sets_content_type_and_str_is_utf8(tmp_path: Path) -> None:
    code = (
        SUM_MODEL
        + "\ndef output_fn(prediction, accept):\n    return 'Σ=' + str(prediction[0]), 'text/x-sum'\n"
    )
    handler = loaded(tmp_path, code, environ={})
    assert handler.transform(b"1,2\n", "text/csv", "text/csv") == ("Σ=3".encode(), "text/x-sum")


def test_str_result_without_content_type_gets_the_accept(tmp_path: Path) -> None:
    code = SUM_MODEL + "\ndef output_fn(prediction, accept):\n    return 'é'\n"
    handler = loaded(tmp_path, code, environ={})
    assert handler.transform(b"1,2\n", "text/csv", "text/csv") == ("é".encode(), "text/csv")


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", "str"),
        ("text/csv", "str"),
        ("text/csv; charset=utf-8", "bytes"),
        ("text/plain", "bytes"),
        ("application/jsonlines", "bytes"),
        (None, "bytes"),
    ],
)
def test_body_is_str_only_for_exact_json_and_csv(
    tmp_path: Path, content_type: str | None, expected: str
) -> None:
    code = (
        "def model_fn(d):\n    return 0\ndef transform_fn(m, body, ct, a):\n    return type(body).__name__\n"
    )
    assert loaded(tmp_path, code, environ={}).transform(b"[1]", content_type, None)[0] == expected.encode()


@pytest.mark.parametrize("content_type", ["text/plain", "text/csv; charset=utf-8", None])
def test_unsupported_content_type(tmp_path: Path, content_type: str | None) -> None:
    handler = loaded(tmp_path, SUM_MODEL, environ={})
    with pytest.raises(UnsupportedFormatError) as e:
        handler.transform(b"1,2\n", content_type, "text/csv")
    assert e.value.hook == "input_fn"
    assert f"Content type {content_type} is not supported by this framework" in str(e.value)
    for supported in (
        "application/json",
        "text/csv",
        "application/x-npy",
        "application/x-npz",
        "application/jsonlines",
    ):
        assert supported in str(e.value)


def test_unsupported_accept(tmp_path: Path) -> None:
    handler = loaded(tmp_path, SUM_MODEL, environ={})
    with pytest.raises(UnsupportedFormatError) as e:
        handler.transform(b"1,2\n", "text/csv", "text/plain, image/png")
    assert e.value.hook == "output_fn"
    assert "Content type text/plain, image/png is not supported by this framework" in str(e.value)


def test_npy_round_trip(tmp_path: Path) -> None:
    code = "def model_fn(d):\n    return None\ndef predict_fn(data, model):\n    return data * 2\n"
    handler = loaded(tmp_path, code, environ={})
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    buffer = io.BytesIO()
    np.save(buffer, data)
    body, content_type = handler.transform(buffer.getvalue(), "application/x-npy", "application/x-npy")
    assert content_type == "application/x-npy"
    out = np.load(io.BytesIO(body))
    assert out.dtype == np.float32 and np.array_equal(out, data * 2)


def test_jsonlines_both_ways(tmp_path: Path) -> None:
    handler = loaded(tmp_path, SUM_MODEL, environ={})
    body = b"[1, 2]\n\n[3, 4.5]\n"
    assert handler.transform(body, "application/jsonlines", "application/jsonlines") == (
        b"3.0\n7.5\n",
        "application/jsonlines",
    )
    assert codecs.encode_jsonlines(np.array([[1, 2], [3, 4]])) == "[1, 2]\n[3, 4]\n"
    assert codecs.encode_jsonlines([{"a": np.float32(0.5)}]) == '{"a": 0.5}\n'


def test_hook_errors_name_the_hook_and_keep_the_message(tmp_path: Path) -> None:
    code = SUM_MODEL + "\ndef input_fn(body, content_type):\n    raise ValueError('bad row 7')\n"
    handler = loaded(tmp_path, code, environ={})
    with pytest.raises(HandlerError) as e:
        handler.transform(b"1\n", "text/csv", None)
    assert type(e.value) is HandlerError
    assert str(e.value) == "input_fn raised ValueError: bad row 7" and e.value.hook == "input_fn"
    assert "raise ValueError('bad row 7')" in e.value.traceback_text
    assert isinstance(e.value.__cause__, ValueError)


def test_unserialisable_result_is_a_contract_error(tmp_path: Path) -> None:
    code = SUM_MODEL + "\ndef output_fn(prediction, accept):\n    return prediction\n"
    with pytest.raises(HandlerContractError, match="output_fn returned ndarray"):
        loaded(tmp_path, code, environ={}).transform(b"1\n", "text/csv", None)


def test_invalid_utf8_text_body(tmp_path: Path) -> None:
    with pytest.raises(HandlerError, match="not UTF-8") as e:
        loaded(tmp_path, SUM_MODEL, environ={}).transform(b"\xff,1\n", "text/csv", None)
    assert e.value.hook == "input_fn"


# ---- execution parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        ("return {'MaxPayloadInMB': 1}", {"MaxPayloadInMB": 1}),
        ('return \'{"BatchStrategy": "SINGLE_RECORD"}\'', {"BatchStrategy": "SINGLE_RECORD"}),
        ("raise RuntimeError('no')", None),
        ("return [1]", [1]),  # for runner/contract/parameters.py to ignore, saying so
        ("return 'not json'", "not json"),
        ("return ('{\"MaxPayloadInMB\": 1}', 200)", {"MaxPayloadInMB": 1}),  # a Flask view's answer
        ("return ('{\"MaxPayloadInMB\": 1}', 404)", None),  # a non-200 answer: no parameters
    ],
)
def test_execution_parameters_fn(tmp_path: Path, fn: str, expected: dict[str, object] | None) -> None:
    code = f"def execution_parameters_fn():\n    {fn}\n"
    assert Handler.load(model_dir(tmp_path, code), environ={}).execution_parameters() == expected


def test_no_execution_parameters_fn(tmp_path: Path) -> None:
    assert Handler.load(model_dir(tmp_path, SUM_MODEL), environ={}).execution_parameters() is None


# ---- image families ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "family"),
    [
        (SKLEARN_IMAGE, "sklearn"),
        ("246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1", "xgboost"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-gpu-py310", "pytorch"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu", "tensorflow"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.1-gpu", "huggingface"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.1-tgi", "base"),
        ("my-registry.example.com/sagemaker-scikit-learn-fork/app:1", "base"),  # the repository, not the path
        ("batch-transform/test:latest", "base"),
        (None, "base"),
    ],
)
def test_family_from_image(image: str | None, family: str) -> None:
    assert family_for_image(image).name == family


SKLEARN_MODEL = """
class Model:
    def predict(self, data):
        return data.sum(axis=-1)

def model_fn(model_dir):
    return Model()
"""


def test_sklearn_defaults(tmp_path: Path) -> None:
    handler = loaded(tmp_path, SKLEARN_MODEL, image=SKLEARN_IMAGE, environ={})
    assert handler.family == "sklearn"
    # float32 cast, model.predict, csv.writer encoding (float32 prints like numpy does).
    assert handler.transform(b"0.1,0.2\n1,2\n", "text/csv", "text/csv") == (b"0.3\n3.0\n", "text/csv")
    assert handler.transform(b"[[1, 2], [3, 4]]", "application/json", "application/json")[0] == b"[3.0, 7.0]"
    # A missing Content-Type means application/json there.
    assert handler.transform(b"[[1, 2]]", None, None) == (b"[3.0]", "application/json")
    # The Accept value is matched whole, not as a list.
    with pytest.raises(
        UnsupportedFormatError, match="Content type text/csv,application/json is not supported"
    ):
        handler.transform(b"1,2\n", "text/csv", "text/csv,application/json")


def test_sklearn_hooks_get_no_context(tmp_path: Path) -> None:
    code = (
        SKLEARN_MODEL + "\ndef output_fn(prediction, accept, scale=10):\n    return str(prediction * scale)\n"
    )
    handler = loaded(tmp_path, code, image=SKLEARN_IMAGE, environ={})
    assert handler.transform(b"1,2\n", "text/csv", "text/csv")[0] == b"30.0"


# A scikit-learn featurizer's output_fn, in the form of public examples (flask's Response with a
# mimetype; a 415 Response for an Accept it cannot produce). The scikit-learn image's Flask server
# (sagemaker-containers' transformer) hands such a Response back as the HTTP answer.
RESPONSE_MODEL = """
from flask import Response
import werkzeug

def output_fn(prediction, accept):
    if accept == "text/csv":
        return Response("\\n".join(str(v) for v in prediction) + "\\n", mimetype="text/csv")
    if accept == "application/x-plain":
        return werkzeug.wrappers.Response(b"raw", content_type="application/x-plain; charset=utf-8")
    return Response(response="Accept {} is not supported".format(accept), status=415, mimetype="text/plain")
"""


def test_sklearn_output_fn_may_return_a_flask_response(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    handler = loaded(tmp_path, SKLEARN_MODEL + RESPONSE_MODEL, image=SKLEARN_IMAGE, environ={})
    # Flask adds the charset to a text mimetype, as the container's Content-Type carries it.
    assert handler.transform(b"0.5,0.5\n1,2\n", "text/csv", "text/csv") == (
        b"1.0\n3.0\n",
        "text/csv; charset=utf-8",
    )
    assert handler.transform(b"1,2\n", "text/csv", "application/x-plain") == (
        b"raw",
        "application/x-plain; charset=utf-8",
    )
    with pytest.raises(
        HandlerError, match="output_fn returned an HTTP 415 response: Accept application/json"
    ):
        handler.transform(b"1,2\n", "text/csv", "application/json")


def test_toolkit_output_fn_returning_a_response_is_not_a_body(tmp_path: Path) -> None:
    # The PyTorch/MXNet model server has no Flask: a Response is an unsupported output there too.
    pytest.importorskip("flask")
    handler = loaded(tmp_path, SUM_MODEL + RESPONSE_MODEL, environ={})
    with pytest.raises(
        HandlerContractError, match="output_fn returned Response, which is not a response body"
    ):
        handler.transform(b"1,2\n", "text/csv", "text/csv")


def test_tensorflow_serving_images_are_refused(tmp_path: Path) -> None:
    image = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu"
    with pytest.raises(HandlerContractError, match="TensorFlow Serving"):
        Handler.load(model_dir(tmp_path, SUM_MODEL), image=image, environ={})


def test_xgboost_without_program_is_the_builtin_algorithm(tmp_path: Path) -> None:
    image = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"
    failing = "raise RuntimeError('the algorithm does not import a script')\n"
    assert Handler.load(model_dir(tmp_path, failing), image=image, environ={}).family == "xgboost-algorithm"
    handler = Handler.load(
        model_dir(tmp_path, SUM_MODEL), image=image, environ={"SAGEMAKER_PROGRAM": "inference.py"}
    )
    assert handler.family == "xgboost"


# ---- the built-in XGBoost algorithm -------------------------------------------------------------

XGB_ALGORITHM_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


def step_booster(high: float = 10.0) -> object:
    """One exact tree: feature 0 below 2 predicts 0, else ``high`` (eta 1, lambda 0, base_score 0)."""
    xgb = pytest.importorskip("xgboost")
    train = xgb.DMatrix(np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]), label=[0, 0, high, high])
    params = {"max_depth": 1, "eta": 1.0, "lambda": 0.0, "base_score": 0.0, "min_child_weight": 0.0}
    return xgb.train(params, train, num_boost_round=1)


def algorithm(tmp_path: Path, save: str = "pickle", models: int = 1) -> Handler:
    import pickle

    tmp_path.mkdir(parents=True, exist_ok=True)
    for k in range(models):
        booster = step_booster(10.0 * (k + 1))
        path = tmp_path / ("xgboost-model" if k == 0 else f"xgboost-model-{k}")
        if save == "pickle":
            path.write_bytes(pickle.dumps(booster))
        else:
            booster.save_model(str(path) + ".json")
            (tmp_path / (path.name + ".json")).rename(path)
    handler = Handler.load(tmp_path, image=XGB_ALGORITHM_IMAGE, environ={})
    handler.load_model()
    return handler


@pytest.mark.parametrize("save", ["pickle", "save_model"])
def test_algorithm_csv_is_stripped_and_written_one_prediction_a_line(tmp_path: Path, save: str) -> None:
    handler = algorithm(tmp_path, save)
    # The payload's trailing newline is stripped (parse_content_data), so no NaN row is predicted.
    assert handler.transform(b"0,5\n3,5\n", "text/csv", "text/csv") == (b"0.0\n10.0\n", "text/csv")
    assert handler.transform(b"1,\n", "text/csv", "text/csv") == (b"0.0\n", "text/csv")  # empty cell: NaN


def test_algorithm_libsvm_and_json(tmp_path: Path) -> None:
    handler = algorithm(tmp_path)
    # Columns are the tokens' own 0-based indices; the label (no colon) is ignored.
    assert handler.transform(b"1 0:3 1:5\n0 0:1\n", "text/libsvm", "application/json") == (
        b"[10.0, 0.0]",
        "application/json",
    )
    assert handler.transform(b"3,5", None, None)[0] == b"[10.0]"  # text/csv in, the JSON default out


def test_algorithm_ensemble_averages_its_models(tmp_path: Path) -> None:
    # Trees predicting 10 and 20 for this row: the container answers their mean.
    assert algorithm(tmp_path, models=2).transform(b"3,5", "text/csv", "text/csv")[0] == b"15.0\n"


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "message"),
    [
        (b"", "text/csv", "text/csv", "No content in the request body"),
        (b"1,2", "application/json", "text/csv", "Content-type application/json not supported"),
        (b"a,b", "text/csv", "text/csv", "Loading csv data failed with Exception"),
        (b"1,2", "text/csv", "text/plain", "text/plain is not an accepted Accept type"),
    ],
)
def test_algorithm_errors(tmp_path: Path, body: bytes, content_type: str, accept: str, message: str) -> None:
    with pytest.raises(HandlerError, match=message):
        algorithm(tmp_path).transform(body, content_type, accept)


# ---- codecs against the toolkits' own numpy calls ----------------------------------------------

CSV_CASES = [
    "1,2,3\n",  # one row -> 1-D
    "1\n2\n3\n",  # one column -> 1-D
    "5\n",  # one cell -> 0-D
    "1,2,3\n4,5,6\n7,8,9\n",
    "1,2\n3,4",  # no final newline
    "-1.5,2e-3,+4E+2\n.5,6.,-0\n",
    "1e400,-1e-400,4.9e-324\n",
    "1,,3\n4,5,6\n",  # blank cell -> nan
    "1,2,\n",
    "nan,inf,-inf\n",
    "+5,+3\n",  # integers with a sign: int64, as genfromtxt's int() reads them
    "007,-0\n",
    "1,2.5\n3,4.5\n",  # an int and a float column: a structured array
    "99999999999999999999,1\n",
    "NA,1\n",
    "a,1\nb,2\n",
    '"1",2\n',
    "1,2 # note\n3,4\n",
    "1,2\r\n3,4\r\n",
    "1,2\r3,4\n",
    "1,2\n\n3,4\n",
    "1,2\n   \n3,4\n",
    " 1 , 2 \n\t3,4\n",
    "1_000,2\n",
    "\ufeff1,2\n",
    "123456789012345678901234567890,0.1\n",
    "0.30000000000000004,1.7976931348623157e308\n",
]


@pytest.mark.parametrize("text", CSV_CASES)
def test_csv_decode_equals_genfromtxt(text: str) -> None:
    # The toolkit's decoder._csv_to_numpy: dtype=None, so each column's type is inferred.
    expected = np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
    actual = codecs.decode_csv(text)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype.names:  # a structured array (mixed columns)
        assert repr(actual.tolist()) == repr(expected.tolist())
        return
    np.testing.assert_array_equal(actual, expected)
    if expected.dtype.kind == "f":
        assert np.array_equal(np.signbit(actual), np.signbit(expected))


def test_csv_decode_of_integers_is_int64(tmp_path: Path) -> None:
    assert codecs.decode_csv("1,2,3\n4,5,6\n").dtype == np.int64
    assert codecs.decode_csv("1.0,2,3\n").dtype.names  # a float column among ints: structured


def test_csv_decode_ragged_rows_fail_like_genfromtxt() -> None:
    with pytest.raises(ValueError, match="got 1 columns instead of 2"):
        codecs.decode_csv("1,2\n3\n")


def test_csv_decode_empty_body() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.genfromtxt(io.StringIO(""), delimiter=",")
    actual = codecs.decode_csv("")
    assert actual.shape == expected.shape and actual.dtype == expected.dtype


def test_csv_decode_random_numbers_equal_genfromtxt() -> None:
    rng = np.random.default_rng(7)
    values = rng.standard_normal((200, 7)) * 10.0 ** rng.integers(-30, 30, (200, 7))
    text = "\n".join(
        ",".join(repr(float(v)) if i % 3 else f"{v:.6g}" for i, v in enumerate(row)) for row in values
    )
    expected = np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
    np.testing.assert_array_equal(codecs.decode_csv(text), expected)


@pytest.mark.parametrize(
    "prediction",
    [
        np.array([6.0, 15.0, 24.0]),
        np.array([[1.5, -2.0], [1e16, 1e-5]]),
        np.array([1, 2, 3]),
        np.array([[True, False]]),
        np.array([0.1, 0.25], dtype=np.float32),
        np.array([["a", "b,c"]]),
        [1.0, 2.5],
        np.random.default_rng(3).standard_normal((50, 3)) * 1e10,
    ],
)
def test_csv_encode_equals_savetxt(prediction: object) -> None:
    buffer = io.StringIO()
    np.savetxt(buffer, prediction, delimiter=",", fmt="%s")  # type: ignore[arg-type]
    assert codecs.encode_csv(prediction) == buffer.getvalue()


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (np.array([6.0, 15.0]), "[6.0, 15.0]"),
        (np.float32(0.5), "0.5"),
        (np.int64(3), "3"),
        ({"p": np.array([1, 2]), "s": np.float64(0.25)}, '{"p": [1, 2], "s": 0.25}'),
        ([np.float32(1.5)], "[1.5]"),
    ],
)
def test_json_encode_converts_numpy_values(prediction: object, expected: str) -> None:
    assert codecs.encode_json(prediction) == expected


def test_csv_rows_codec_of_sagemaker_containers() -> None:
    assert codecs.decode_csv_rows('"1",2\n3,4\n').tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert codecs.decode_csv_rows("1,2\n").shape == (2,)
    assert codecs.decode_csv_rows("a,1\n").dtype.kind == "U"  # left as strings for the caller's cast
    assert codecs.encode_csv_rows(np.array([["a", "b,c"]])) == 'a,"b,c"\n'
    assert codecs.encode_csv_rows(np.array([1.0, 2.0])) == "1.0\n2.0\n"


def test_npz_needs_scipy() -> None:
    try:
        import scipy.sparse
    except ImportError:
        with pytest.raises(ImportError, match="needs scipy"):
            codecs.decode_npz(b"")
        return
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(np.eye(2)))
    assert (codecs.decode_npz(buffer.getvalue()).toarray() == np.eye(2)).all()


# ---- imports of what SageMaker's images have ------------------------------------------------------

RETIRED_IMPORT = """
from sagemaker_containers.beta.framework import encoders, worker

def model_fn(model_dir):
    return None
"""

LAZY_RETIRED_IMPORT = (
    SUM_MODEL
    + """
def output_fn(prediction, accept):
    from sagemaker_containers.beta.framework import worker
    return worker.Response(str(prediction), mimetype=accept)
"""
)


@pytest.fixture
def no_sagemaker_containers() -> None:
    """As on a user's cluster: sagemaker-containers is not installed (it is in no extra)."""
    assert importlib.util.find_spec("sagemaker_containers") is None, "sagemaker-containers is installed here"


@pytest.mark.usefixtures("no_sagemaker_containers")
def test_a_script_importing_sagemaker_containers_is_told_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(HandlerError) as e:
        Handler.load(model_dir(tmp_path, RETIRED_IMPORT), image=SKLEARN_IMAGE, environ={})
    message = str(e.value)
    assert e.value.hook == "import"
    assert "No module named 'sagemaker_containers'" in message
    assert "sagemaker_containers (sagemaker-containers) is retired" in message
    assert "`from sagemaker_inference import encoder, decoder`" in message
    assert "batch-transform-runner[frameworks]" in message


@pytest.mark.usefixtures("no_sagemaker_containers")
def test_a_hook_importing_sagemaker_containers_is_told_what_to_change(tmp_path: Path) -> None:
    handler = loaded(tmp_path, LAZY_RETIRED_IMPORT, image=SKLEARN_IMAGE, environ={})
    with pytest.raises(HandlerError, match=r"output_fn raised ModuleNotFoundError: .*is retired") as e:
        handler.transform(b"1,2\n", "text/csv", "text/csv")
    assert "worker.Response(body, mimetype=accept) to the tuple (body, accept)" in str(e.value)


def test_an_unknown_missing_module_gets_no_advice(tmp_path: Path) -> None:
    with pytest.raises(HandlerError) as e:
        Handler.load(model_dir(tmp_path, "import no_such_module_anywhere\n"), environ={})
    assert str(e.value).endswith("No module named 'no_such_module_anywhere'")
