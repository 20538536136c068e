"""on_record_error=quarantine (docs/contract.md §9): a payload the model fails on is bisected to the
records that fail; each is written to the quarantine location with its object, index, offset and
error, and left out of the .out, which equals the output of a job over the good records only. The
default still fails the object, as SageMaker does."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# One output line per input row (a csv_header header is read, not answered); any payload holding a
# "BAD" row fails as a whole.
PICKY_MODEL = """
def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    text = body if isinstance(body, str) else body.decode()
    return [r for r in text.splitlines(keepends=True) if not r.startswith("id,")]

def predict_fn(rows, model):
    bad = [r for r in rows if "BAD" in r]
    if bad:
        raise ValueError(f"cannot score {bad[0].strip()!r}")
    return [r.upper() for r in rows]

def output_fn(rows, accept):
    return "".join(rows), accept
"""

FILLER = "x" * 90


def rows_of(n: int, bad: set[int], tag: str) -> list[bytes]:
    return [f"{tag}{i:05d},{'BAD' if i in bad else 'ok'},{FILLER}\n".encode() for i in range(n)]


def good_output(rows: list[bytes]) -> bytes:
    """What a job over only the good rows writes (the model upper-cases each line)."""
    return b"".join(r.upper() for r in rows if b"BAD" not in r)


def expected_lines(key: str, rows: list[bytes], skip: int = 0) -> list[tuple[str, int, int]]:
    """(key, record_index, byte_offset) of each bad row; ``skip`` bytes (a header) come first."""
    out = []
    offset = skip
    for i, r in enumerate(rows):
        if b"BAD" in r:
            out.append((key, i, offset))
        offset += len(r)
    return out


def read_quarantine(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def picky_job(bucket: Bucket, tmp_path: Path, name: str, **overrides: Any) -> tuple[dict[str, Any], Any]:
    model = model_request("picky", write_model(tmp_path / "m", PICKY_MODEL))
    request = job_request(
        name, bucket.name, ModelName="picky", MaxPayloadInMB=1, MaxConcurrentTransforms=2, **overrides
    )
    return request, model


def test_bad_rows_are_quarantined_and_left_out_of_the_output(bucket: Bucket, tmp_path: Path) -> None:
    # a.csv is ~2.6 MB: three 1 MB payloads, bad rows in the first (two adjacent) and the last (its
    # last row); b.csv's first row is bad; c.csv has none. Rows are ~100 bytes.
    objects = {
        "in/a.csv": rows_of(26_000, {10, 11, 9_000, 25_999}, "a"),
        "in/sub/b.csv": rows_of(50, {0}, "b"),
        "in/c.csv": rows_of(30, set(), "c"),
    }
    for key, rows in objects.items():
        bucket.put(key, b"".join(rows))
    request, model = picky_job(bucket, tmp_path, "quarantine-rows")
    config = RunnerConfig(
        home=tmp_path / "home", on_record_error="quarantine", quarantine_path=f"s3://{bucket.name}/bad/"
    )
    record = run_job(request, config, model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    for key, rows in objects.items():
        assert bucket.get("out/" + key[len("in/") :] + ".out") == good_output(rows), key
    # One JSON Lines file per object with bad rows, named after its output, under <path>/<job name>/.
    assert sorted(bucket.keys("bad/")) == [
        "bad/quarantine-rows/a.csv.jsonl",
        "bad/quarantine-rows/sub/b.csv.jsonl",
    ]
    for key in ("in/a.csv", "in/sub/b.csv"):
        lines = read_quarantine(bucket.get(f"bad/quarantine-rows/{key[3:]}.jsonl").decode())
        assert [(x["key"], x["record_index"], x["byte_offset"]) for x in lines] == expected_lines(
            key, objects[key]
        )
        for x in lines:
            row = objects[key][x["record_index"]].decode().strip()
            assert f"cannot score {row!r}" in x["error"] and "predict_fn" in x["error"], x
    counters = record.describe()["x-runner"]
    assert counters["records_quarantined"] == 5 and counters["objects_done"] == 3
    assert counters["records"] == 26_080
    assert bucket.keys("out/") == ["out/a.csv.out", "out/c.csv.out", "out/sub/b.csv.out"]
    assert bucket.open_uploads() == []


def test_header_and_single_record_quarantine_to_a_local_folder(bucket: Bucket, tmp_path: Path) -> None:
    # csv_header first-line: indexes count rows after the header, offsets are the object's; a
    # SingleRecord payload is one row, so it is quarantined without bisection.
    header = b"id,flag,filler\n"
    rows = rows_of(40, {0, 7, 39}, "h")
    bucket.put("in/h.csv", header + b"".join(rows))
    folder = tmp_path / "quarantine"
    for strategy in ("MultiRecord", "SingleRecord"):
        name = f"quarantine-{strategy.lower()}"
        request, model = picky_job(
            bucket,
            tmp_path,
            name,
            BatchStrategy=strategy,
            TransformOutput={"S3OutputPath": f"s3://{bucket.name}/{name}"},
        )
        config = RunnerConfig(
            home=tmp_path / "home",
            csv_header="first-line",
            on_record_error="quarantine",
            quarantine_path=folder.as_uri(),
        )
        record = run_job(request, config, model_request=model)
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        assert bucket.get(f"{name}/h.csv.out") == good_output(rows)
        lines = read_quarantine((folder / name / "h.csv.jsonl").read_text())
        assert [(x["key"], x["record_index"], x["byte_offset"]) for x in lines] == expected_lines(
            "in/h.csv", rows, skip=len(header)
        )
        assert record.describe()["x-runner"]["records_quarantined"] == 3


def test_join_source_joins_each_good_row_with_its_own_result(bucket: Bucket, tmp_path: Path) -> None:
    rows = rows_of(30, {3, 4, 20}, "j")
    bucket.put("in/j.csv", b"".join(rows))
    request, model = picky_job(bucket, tmp_path, "quarantine-join", DataProcessing={"JoinSource": "Input"})
    config = RunnerConfig(
        home=tmp_path / "home", on_record_error="quarantine", quarantine_path=f"s3://{bucket.name}/bad"
    )
    record = run_job(request, config, model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    joined = b"".join(r.rstrip(b"\n") + b"," + r.upper() for r in rows if b"BAD" not in r)
    assert bucket.get("out/j.csv.out") == joined
    lines = read_quarantine(bucket.get("bad/quarantine-join/j.csv.jsonl").decode())
    assert [(x["record_index"], x["byte_offset"]) for x in lines] == [
        (i, o) for _, i, o in expected_lines("in/j.csv", rows)
    ]


# A serving container (process mode, runner/model/container.py) that answers 400 to a payload with a
# "BAD" row.
PICKY_SERVER = """#!{python}
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        bad = [r for r in body.splitlines() if b"BAD" in r]
        if bad:
            self.reply(400, b"cannot score " + bad[0])
        else:
            self.reply(200, body.upper())

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"""


def test_a_container_answering_400_gets_its_bad_rows_quarantined(bucket: Bucket, tmp_path: Path) -> None:
    rows = rows_of(300, {5, 150, 299}, "s")
    bucket.put("in/s.csv", b"".join(rows))
    server = tmp_path / "server"
    server.mkdir()
    (server / "serve").write_text(PICKY_SERVER.format(python=sys.executable))
    (server / "serve").chmod(0o755)
    request = job_request(
        "quarantine-container",
        bucket.name,
        ModelName="picky-server",
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=1,
        BatchStrategy="MultiRecord",
    )
    config = RunnerConfig(
        home=tmp_path / "home", on_record_error="quarantine", quarantine_path=f"s3://{bucket.name}/bad"
    )
    record = run_job(request, config, model_request=model_request("picky-server", server))
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert record.describe()["x-runner"]["model_runtime"] == "container"
    assert bucket.get("out/s.csv.out") == good_output(rows)
    lines = read_quarantine(bucket.get("bad/quarantine-container/s.csv.jsonl").decode())
    assert [(x["key"], x["record_index"], x["byte_offset"]) for x in lines] == expected_lines(
        "in/s.csv", rows
    )
    for x in lines:
        row = rows[x["record_index"]].decode().strip()
        assert "ClientError: 400" in x["error"] and f"cannot score {row}" in x["error"], x


def test_the_default_still_fails_the_object(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"".join(rows_of(50, {20}, "a")))
    good = rows_of(10, set(), "c")
    bucket.put("in/c.csv", b"".join(good))
    request, model = picky_job(bucket, tmp_path, "no-quarantine")
    record = run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason.startswith(f"ClientError: {bucket.name}/in/a.csv: payload 0:")
    assert "cannot score" in record.failure_reason
    assert bucket.keys("out/") == ["out/c.csv.out"] and bucket.get("out/c.csv.out") == good_output(good)
    assert bucket.open_uploads() == []
    assert record.describe()["x-runner"]["records_quarantined"] == 0


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("s3://{bucket}/out/quarantine", "must lie outside S3OutputPath s3://{bucket}/out"),
        ("s3://{bucket}/out", "must lie outside S3OutputPath s3://{bucket}/out"),
        (None, "is required with on_record_error quarantine"),
    ],
)
def test_a_quarantine_inside_the_output_or_none_is_refused(
    bucket: Bucket, tmp_path: Path, path: str | None, message: str
) -> None:
    bucket.put("in/a.csv", b"".join(rows_of(5, {1}, "a")))
    request, model = picky_job(bucket, tmp_path, "refused")
    config = RunnerConfig(
        home=tmp_path / "home",
        on_record_error="quarantine",
        quarantine_path=path.format(bucket=bucket.name) if path else None,
    )
    record = run_job(request, config, model_request=model)
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason.startswith("ClientError: 1 validation error detected: ")
    assert "'RunnerConfig.quarantine_path'" in record.failure_reason
    assert message.format(bucket=bucket.name) in record.failure_reason
    assert bucket.keys("out/") == []
