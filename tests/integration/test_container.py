"""Bring-your-own-container: real model server processes (models/byoc-echo, models/byoc-onnx) over real
HTTP, per worker on a real local Ray, against the real embedded S3. What a user sees: bytes in S3,
Describe, FailureReason, and what the server itself received (its request log)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.contract.parameters import ModelParameters, model_parameters
from runner.engine.job import run_job
from runner.errors import WorkerStartupError
from runner.jobs.store import TransformJobStatus
from runner.model.artifacts import ModelSpec
from runner.model.runtime import choose_runtime
from runner.model.serving import docker_argv, docker_unavailable, serve_argv

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "models" / "byoc-echo"
ONNX_SERVE = ROOT / "models" / "byoc-onnx" / "serve"
MLP = ROOT / "models" / "mlp-onnx"
ROWS = 10_000  # ~2.2 MB of CSV: three payloads of MaxPayloadInMB=1
LINE = b"x" * 399_999 + b"\n"  # 400,000 bytes: two fit in MaxPayloadInMB=1, three do not


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def requests_log(tmp_path: Path) -> Path:
    return tmp_path / "requests.jsonl"


def echo_model(log: Path, **env: str) -> dict[str, Any]:
    return model_request("echo", ECHO, {"ECHO_REQUEST_LOG": str(log), **env})


def echo_job(name: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    return job_request(name, bucket, ModelName="echo", **overrides)


def fixed(**overrides: Any) -> dict[str, Any]:
    """All three execution settings in the request: no probe server, one worker."""
    return {"MaxConcurrentTransforms": 1, "MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord", **overrides}


def run(
    request: dict[str, Any], model: dict[str, Any], home: Path, notes: list[str] | None = None, **kw: Any
) -> Any:
    return run_job(
        request,
        RunnerConfig(home=home, **kw),
        model_request=model,
        on_note=(notes.append if notes is not None else None),
    )


def served(log: Path, path: str = "/invocations") -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["path"] == path]


def servers_gone(entries: list[dict[str, Any]], within_s: float = 10.0) -> bool:
    """Every server process that logged a request has exited (they get SIGTERM with their worker)."""
    pids = {e["pid"] for e in entries}
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}
        if not pids:
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


# ---- whole jobs ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_health_never_passing_fails_the_job_with_the_log_tail(
    bucket: Bucket, home: Path, requests_log: Path
) -> None:
    bucket.put("in/a.csv", b"1\n")
    model = echo_model(requests_log, ECHO_PING_DELAY_S="1000")
    record = run(
        echo_job("never-healthy", bucket.name, **fixed()), model, home, container_startup_timeout_s=2
    )
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason
    assert (
        "never became healthy" in reason and "within 2s" in reason and "container_startup_timeout_s" in reason
    )
    assert "byoc-echo: pid" in reason and "GET /ping HTTP/1.1 503" in reason  # the server's own last lines
    assert len(reason) <= 1024
    assert bucket.keys("out/") == []
    assert {e["status"] for e in served(requests_log, "/ping")} == {503}


@pytest.mark.usefixtures("ray_local")
def test_slow_ping_then_ready_and_the_runtime_is_reported(
    bucket: Bucket, home: Path, requests_log: Path
) -> None:
    body = b"1,2\n3,4\n"
    bucket.put("in/a.csv", body)
    notes: list[str] = []
    model = echo_model(requests_log, ECHO_PING_DELAY_S="1.5")
    record = run(echo_job("slow-ping", bucket.name, **fixed()), model, home, notes)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == body
    pings = [e["status"] for e in served(requests_log, "/ping")]
    assert pings[0] == 503 and pings[-1] == 200 and 2 <= len(pings) <= 10
    x = record.describe()["x-runner"]
    assert x["model_runtime"] == "container"
    assert x["workers"][0]["server"] == "process" and x["workers"][0]["serve_command"].endswith(
        "byoc-echo/serve"
    )
    assert Path(x["workers"][0]["server_log"]).is_relative_to(home / "logs" / "slow-ping")
    assert any(n.startswith("model runtime: container (Image batch-transform/test:latest") for n in notes)
    assert servers_gone(served(requests_log, "/ping"))


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("case", "server_params", "request_fields", "expected"),
    [
        # (MaxConcurrentTransforms, MaxPayloadInMB, BatchStrategy), lines per invocation
        ("absent", "none", {}, ((1, 6, "MultiRecord"), [3])),
        ("present", None, {}, ((2, 1, "MultiRecord"), [1, 2])),
        (
            "overridden-by-request",
            None,
            {"BatchStrategy": "SingleRecord", "MaxPayloadInMB": 6},
            ((2, 6, "SingleRecord"), [1, 1, 1]),
        ),
    ],
)
def test_execution_parameters_fill_what_the_request_left_out(
    bucket: Bucket,
    home: Path,
    requests_log: Path,
    case: str,
    server_params: str | None,
    request_fields: dict[str, Any],
    expected: tuple[tuple[int, int, str], list[int]],
) -> None:
    body = LINE * 3
    bucket.put("in/a.csv", body)
    env = {} if server_params is None else {"ECHO_EXECUTION_PARAMETERS": server_params}
    record = run(
        echo_job(f"params-{case}", bucket.name, **request_fields), echo_model(requests_log, **env), home
    )
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == body
    d = record.describe()
    (mct, mb, strategy), lines = expected
    assert (d["MaxConcurrentTransforms"], d["MaxPayloadInMB"], d["BatchStrategy"]) == (mct, mb, strategy)
    assert len(d["x-runner"]["workers"]) == mct
    assert sorted(e["lines"] for e in served(requests_log)) == lines
    assert len(served(requests_log, "/execution-parameters")) == 1  # read once, before sizing


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("answer", "ignored"),
    [
        (
            '{"MaxConcurrentTransforms": "two", "MaxPayloadInMB": 1}',
            ["MaxConcurrentTransforms='two' (allowed: an integer >= 0)"],
        ),
        ('{"BatchStrategy": "Mini"}', ["BatchStrategy='Mini' (allowed: MULTI_RECORD, SINGLE_RECORD, "]),
        ("not json", ["the answer 'not json' is not a JSON object"]),
    ],
)
def test_unusable_execution_parameters_are_ignored_and_said(
    bucket: Bucket, home: Path, requests_log: Path, answer: str, ignored: list[str]
) -> None:
    """SageMaker ignores what it cannot use of a 200 /execution-parameters answer: the job runs with
    the rest (here MaxPayloadInMB=1 of the first answer) and the defaults, and says what it ignored."""
    bucket.put("in/a.csv", LINE * 3)
    model = echo_model(requests_log, ECHO_EXECUTION_PARAMETERS=answer)
    notes: list[str] = []
    record = run(echo_job("bad-params", bucket.name), model, home, notes)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == LINE * 3
    d = record.describe()
    said = d["x-runner"]["execution_parameters_ignored"]
    assert len(said) == len(ignored) and all(s.startswith(i) for s, i in zip(said, ignored, strict=True))
    assert all(any(f"ignored {s}, as SageMaker ignores it" in n for n in notes) for s in said)
    assert (d["MaxConcurrentTransforms"], d["BatchStrategy"]) == (1, "MultiRecord")
    expected_mb = 1 if "MaxPayloadInMB" in answer else 6
    assert d["MaxPayloadInMB"] == expected_mb
    assert len(served(requests_log)) == (2 if expected_mb == 1 else 1)  # 1.2 MB: two payloads of 1 MB


@pytest.mark.usefixtures("ray_local")
def test_invocation_timeout_with_retries_exhausted(bucket: Bucket, home: Path, requests_log: Path) -> None:
    bucket.put("in/slow.csv", b"1\n")
    request = echo_job(
        "timeout",
        bucket.name,
        **fixed(),
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 1},
    )
    record = run(request, echo_model(requests_log, ECHO_SLEEP_S="5"), home)
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason
    assert f"{bucket.name}/in/slow.csv: Unable to get response from algorithm" in reason
    assert "InvocationsTimeoutInSeconds=1 on 2 of 2 attempt(s) (InvocationsMaxRetries=1)" in reason
    assert len(served(requests_log)) == 2
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("fail_first", "status", "retries", "ok", "attempts"),
    [(2, 500, 3, True, 3), (5, 503, 1, False, 2), (1, 400, 3, False, 1)],
)
def test_errors_are_retried_within_the_budget_except_4xx(
    bucket: Bucket,
    home: Path,
    requests_log: Path,
    fail_first: int,
    status: int,
    retries: int,
    ok: bool,
    attempts: int,
) -> None:
    body = b"a\nb\n"
    bucket.put("in/a.csv", body)
    request = echo_job(
        f"retry-{status}", bucket.name, **fixed(), ModelClientConfig={"InvocationsMaxRetries": retries}
    )
    model = echo_model(requests_log, ECHO_FAIL_FIRST_N=str(fail_first), ECHO_FAIL_STATUS=str(status))
    record = run(request, model, home)
    assert len(served(requests_log)) == attempts
    if ok:
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        assert bucket.get("out/a.csv.out") == body
        return
    assert record.status is TransformJobStatus.FAILED
    name = f"{bucket.name}/in/a.csv"
    assert f"{name}: ClientError: {status} (payload 0, {attempts} attempt(s)" in record.failure_reason
    assert (
        f"{name}: Message:\n{name}: byoc-echo: invocation {attempts} fails on purpose"
        in record.failure_reason
    )


@pytest.mark.usefixtures("ray_local")
def test_server_dying_mid_job_is_restarted_and_no_record_is_lost_or_duplicated(
    bucket: Bucket, home: Path, requests_log: Path
) -> None:
    body = b"".join(b"%d\n" % i for i in range(6))
    bucket.put("in/a.csv", body)
    request = echo_job("dies", bucket.name, **fixed(BatchStrategy="SingleRecord"))
    record = run(request, echo_model(requests_log, ECHO_EXIT_AFTER_N="2"), home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == body
    seen = served(requests_log)
    answered = [e["body_head"] for e in seen if not e["dies"]]
    assert answered == [f"{i}\n" for i in range(6)]  # each record answered once, in order
    assert [e["body_head"] for e in seen if e["dies"]] == ["2\n", "4\n"]  # retried on a new server
    assert len({e["pid"] for e in seen}) == 3
    assert record.describe()["x-runner"]["workers"][0]["server_restarts"] == 2
    assert servers_gone(seen)


@pytest.mark.usefixtures("ray_local")
def test_max_payload_zero_sends_one_chunked_body(bucket: Bucket, home: Path, requests_log: Path) -> None:
    body = LINE * 7  # 2.8 MB: three 1 MiB chunks
    bucket.put("in/big.csv", body)
    request = echo_job("chunked", bucket.name, **fixed(MaxPayloadInMB=0))
    record = run(request, echo_model(requests_log), home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/big.csv.out") == body
    [seen] = served(requests_log)
    assert seen["transfer_encoding"] == "chunked" and seen["content_length"] is None
    assert seen["bytes"] == len(body) and seen["content_type"] == "text/csv" and seen["accept"] == "text/csv"


@pytest.mark.usefixtures("ray_local")
def test_environment_precedence_as_the_server_sees_it(bucket: Bucket, home: Path, requests_log: Path) -> None:
    bucket.put("in/a.csv", b"x\n")
    names = "A,B,C,SAGEMAKER_BATCH,SAGEMAKER_BATCH_STRATEGY,SAGEMAKER_MAX_PAYLOAD_IN_MB,"
    names += "SAGEMAKER_BIND_TO_PORT,SM_MODEL_DIR"
    model = echo_model(
        requests_log,
        ECHO_ENV_VARS=names,
        A="model",
        B="model",
        C="model",
        SAGEMAKER_BATCH_STRATEGY="from-model",
        SAGEMAKER_MAX_PAYLOAD_IN_MB="99",
    )
    request = echo_job(
        "env",
        bucket.name,
        **fixed(BatchStrategy="SingleRecord"),
        Environment={"B": "job", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "5"},
        TransformOutput={"Accept": "application/json"},
    )
    record = run(request, model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    seen = json.loads(bucket.get("out/a.csv.out"))
    port = seen.pop("SAGEMAKER_BIND_TO_PORT")
    assert port.isdigit() and port == str(record.describe()["x-runner"]["workers"][0]["port"])
    assert seen == {
        "A": "model",  # model Environment
        "B": "job",  # the job's Environment wins
        "C": "model",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",  # platform variables beat the model's
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "5",  # ... and the job's beat them
        "SM_MODEL_DIR": str(ECHO),
    }


def _build_mlp(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("mlp_build_for_byoc", MLP / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    _, tarball = build.build(out)
    build.make_csv(out / "data.csv", ROWS, 11)
    return Path(tarball)


@pytest.mark.usefixtures("ray_local")
def test_onnx_server_output_is_byte_identical_to_the_hooks(
    bucket: Bucket, home: Path, tmp_path: Path
) -> None:
    tarball = _build_mlp(tmp_path / "mlp")
    bucket.put("in/data.csv", (tmp_path / "mlp" / "data.csv").read_bytes())
    model = model_request("mlp", tarball)
    outputs = {}
    for runtime in ("hooks", "container"):
        request = job_request(
            f"mlp-{runtime}",
            bucket.name,
            ModelName="mlp",
            MaxPayloadInMB=1,  # several payloads
            TransformOutput={"S3OutputPath": f"s3://{bucket.name}/out-{runtime}"},
        )
        record = run(
            request,
            model,
            home,
            serve_command=f"{sys.executable} {ONNX_SERVE}",
            model_runtime="auto" if runtime == "hooks" else runtime,
        )
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        assert record.describe()["x-runner"]["model_runtime"] == runtime
        assert record.describe()["x-runner"]["payloads"] > 1
        outputs[runtime] = bucket.get(f"out-{runtime}/data.csv.out")
    assert outputs["hooks"].count(b"\n") == ROWS
    assert outputs["container"] == outputs["hooks"]


@pytest.mark.usefixtures("ray_local")
def test_docker_mode_runs_the_image(bucket: Bucket, home: Path, tmp_path: Path) -> None:
    reason = docker_unavailable("python:3.11-slim")
    if reason is not None and ("docker info" in reason or "docker CLI" in reason):
        pytest.skip(f"Docker mode needs a reachable Docker daemon: {reason}")
    tag = "batch-transform/byoc-echo:test"
    built = subprocess.run(["docker", "build", "-q", "-t", tag, str(ECHO)], capture_output=True, check=False)
    if built.returncode != 0:
        pytest.skip(f"cannot build {tag} (no network for the base image?): {built.stderr.decode()[-300:]}")
    empty = tmp_path / "no-serve"  # no `serve` in the model folder: only the image can serve
    empty.mkdir()
    bucket.put("in/a.csv", b"1\n2\n")
    model = model_request("echo", empty)
    model["PrimaryContainer"]["Image"] = tag
    record = run(echo_job("docker", bucket.name, **fixed()), model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"1\n2\n"
    assert record.describe()["x-runner"]["workers"][0]["server"] == "docker"


# ---- the pieces, without Ray ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"MaxConcurrentTransforms": 8, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}',
            {"MaxConcurrentTransforms": 8, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6},
        ),
        (
            b'{"BatchStrategy": "SingleRecord", "Other": 1, "MaxPayloadInMB": null}',
            {"BatchStrategy": "SingleRecord"},
        ),
        (b'{"MaxPayloadInMB": 0}', {"MaxPayloadInMB": 0}),
        (b"{}", {}),
    ],
)
def test_execution_parameters_accepted(body: bytes, expected: dict[str, Any]) -> None:
    assert model_parameters(json.loads(body)) == ModelParameters(expected)


@pytest.mark.parametrize(
    ("answer", "ignored"),
    [
        ([1], "the answer [1] is not a JSON object"),
        (b"\xff", "the answer '\ufffd' is not a JSON object"),
        (
            {"MaxPayloadInMB": 101, "MaxConcurrentTransforms": 2},
            "MaxPayloadInMB=101 (allowed: an integer 0..100)",
        ),
        ({"MaxConcurrentTransforms": True}, "MaxConcurrentTransforms=True (allowed: an integer >= 0)"),
        ({"MaxConcurrentTransforms": -1}, "MaxConcurrentTransforms=-1 (allowed: an integer >= 0)"),
        (
            {"BatchStrategy": 3},
            "BatchStrategy=3 (allowed: MULTI_RECORD, SINGLE_RECORD, MultiRecord, SingleRecord)",
        ),
    ],
)
def test_unusable_execution_parameters_are_named(answer: Any, ignored: str) -> None:
    got = model_parameters(answer)
    assert got.ignored == (ignored,)
    assert got.values == (
        {"MaxConcurrentTransforms": 2} if isinstance(answer, dict) and "MaxPayloadInMB" in answer else {}
    )


@pytest.mark.parametrize(
    ("image", "code", "setting", "expected"),
    [
        ("123.dkr.ecr.us-east-1.amazonaws.com/my-server:1", False, "auto", "container"),
        ("123.dkr.ecr.us-east-1.amazonaws.com/my-server:1", True, "auto", "hooks"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1", False, "auto", "hooks"),
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
            False,
            "auto",
            "hooks",
        ),
        ("huggingface-pytorch-inference:2.1", False, "auto", "hooks"),
        ("my-server:1", True, "container", "container"),
        ("my-server:1", False, "hooks", "hooks"),
    ],
)
def test_runtime_choice(tmp_path: Path, image: str, code: bool, setting: str, expected: str) -> None:
    if code:
        write_model(tmp_path, "def model_fn(d):\n    return None\n")
    model = ModelSpec("m", image, str(tmp_path))
    assert choose_runtime(model, tmp_path, setting)[0] == expected


def test_serve_command_resolution(tmp_path: Path) -> None:
    assert serve_argv(tmp_path, "python 'my dir/serve' --x") == ["python", "my dir/serve", "--x"]
    with pytest.raises(WorkerStartupError, match=r"serve_command \(--serve-command"):
        serve_argv(tmp_path, None)
    serve = tmp_path / "serve"
    serve.write_text("#!/usr/bin/env python3\nprint(1)\n")  # from an S3 prefix: no executable bit
    assert serve_argv(tmp_path, None) == ["/usr/bin/env", "python3", str(serve)]
    serve.chmod(0o755)
    assert serve_argv(tmp_path, None) == [str(serve)]
    assert RunnerConfig().model_runtime == "auto" and RunnerConfig().container_startup_timeout_s == 600
    with pytest.raises(ValueError, match="model_runtime must be one of auto, hooks, container"):
        RunnerConfig(model_runtime="docker")


def test_docker_command_line(tmp_path: Path) -> None:
    argv = docker_argv("img:1", "bt-w1", 40123, tmp_path, ["A", "SAGEMAKER_BATCH"], 2.0, "0")
    assert argv[:4] == ["docker", "run", "--rm", "--name"]
    assert argv[-2:] == ["img:1", "serve"]
    joined = " ".join(argv)
    assert "-p 127.0.0.1:40123:8080" in joined and f"-v {tmp_path.resolve()}:/opt/ml/model:ro" in joined
    assert "-e A -e SAGEMAKER_BATCH" in joined and "--cpus 2" in joined and "--gpus device=0" in joined
    if shutil.which("docker") is None:
        assert docker_unavailable("img:1") == "no docker CLI on PATH"
