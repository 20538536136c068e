"""Odd object keys and hostile model archives never put a byte outside S3OutputPath or the model cache.

Keys with ``//``, a leading ``/``, unicode and ~1000-byte names are written under S3OutputPath, named
after their input; keys with ``.`` or ``..`` segments (which a store whose keys are paths resolves
elsewhere) are refused before anything runs, on S3 and on ``file://`` storage alike. Model archives
with absolute paths, ``..``, symlinks, hardlinks or devices are refused before anything is extracted.
Real parts throughout: the embedded S3, a local Ray, real files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.config import RunnerConfig
from runner.contract.spec import parse_transform_job
from runner.engine.job import run_job
from runner.errors import ModelError, SpecError, StorageError
from runner.jobs.store import JobRecord, TransformJobStatus
from runner.model.artifacts import ensure_model_dir
from runner.records.plan import plan_inputs
from runner.storage import storage_for
from runner.storage.local import LocalStorage
from tests.conftest import Bucket
from tests.integration.conftest import SUM_MODEL, job_request, model_request, write_model

pytestmark = pytest.mark.integration

# ~1000-byte keys in components SeaweedFS accepts (at most 255 bytes each, 1024 in all).
LONG = "/".join(["d" * 200] * 4) + "/" + "f" * 180 + ".csv"
UNICODE = "ünï/☃ 雪 [x] (1) #&=+.csv"


def sums(body: bytes) -> bytes:
    return b"".join(f"{sum(int(x) for x in line.split(b','))}\n".encode() for line in body.splitlines())


def run(request: dict[str, Any], tmp_path: Path, model: dict[str, Any] | None = None) -> JobRecord:
    model = model or model_request("sum", str(write_model(tmp_path / "model", SUM_MODEL)))
    return run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)


def manifest_request(name: str, bucket: Bucket, entries: list[str]) -> dict[str, Any]:
    bucket.put("manifest.json", json.dumps([{"prefix": f"s3://{bucket.name}/in/"}, *entries]).encode())
    source = {"S3DataType": "ManifestFile", "S3Uri": f"s3://{bucket.name}/manifest.json"}
    return job_request(name, bucket.name, TransformInput={"DataSource": {"S3DataSource": source}})


# --- S3 input prefixes and manifests --------------------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_odd_keys_under_an_input_prefix_are_written_under_the_output_path(
    bucket: Bucket, tmp_path: Path
) -> None:
    inputs = {
        "in//double-slash.csv": b"1,2\n",  # the store merges "//": read back as in/double-slash.csv
        f"in/{UNICODE}": b"3,4\n",
        f"in/{LONG}": b"5,6\n",
        "in/plain.csv": b"7,8\n",
    }
    for key, body in inputs.items():
        bucket.put(key, body)
    listed = sorted(k.removeprefix("in/") for k in bucket.keys("in/"))
    assert listed == sorted([f"{LONG}", UNICODE, "double-slash.csv", "plain.csv"])
    before = set(bucket.keys())
    record = run(job_request("odd-keys", bucket.name, MaxPayloadInMB=1), tmp_path)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    # Exactly one output per input, named after it, under S3OutputPath; nothing else changed.
    assert set(bucket.keys()) - before == {f"out/{rel}.out" for rel in listed}
    for rel in listed:
        assert bucket.get(f"out/{rel}.out") == sums(bucket.get(f"in/{rel}")), rel
    assert bucket.open_uploads() == []


@pytest.mark.usefixtures("ray_local")
def test_an_output_key_over_the_length_limit_fails_that_object_only(
    bucket: Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "in/" + rel fits S3's 1024 bytes; "outputs/" + rel + ".out" does not.
    rel = "/".join(["k" * 250] * 3) + "/" + "z" * 250 + ".csv"
    bucket.put(f"in/{rel}", b"1,2\n")
    bucket.put("in/ok.csv", b"1,2\n")
    output_path = f"s3://{bucket.name}/outputs"
    record = run(
        job_request("too-long", bucket.name, TransformOutput={"S3OutputPath": output_path}), tmp_path
    )
    error = (
        f"{bucket.name}/in/{rel}: S3 PutObject {output_path}/{rel}.out failed: KeyTooLongError (HTTP 400): "
        "Your key is too long."
    )
    assert error in caplog.messages  # logged whole; FailureReason keeps AWS's 1024 characters
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason == f"ClientError: {error}"[:1024]
    assert bucket.keys("outputs/") == ["outputs/ok.csv.out"]
    assert bucket.open_uploads() == []


DOT_ENTRIES = {
    "dotdot": ("../escape.csv", ".."),
    "dotdot-to-another-bucket": ("x/../../../other-bucket/x.csv", ".."),
    "dot": ("./a.csv", "."),
    "dot-inside": ("x/./a.csv", "."),
}


@pytest.mark.parametrize(("entry", "segment"), DOT_ENTRIES.values(), ids=DOT_ENTRIES.keys())
def test_manifest_entries_with_dot_segments_are_refused_before_anything_runs(
    bucket: Bucket, tmp_path: Path, s3_server: Any, entry: str, segment: str
) -> None:
    bucket.put("in/a.csv", b"1,2\n")
    request = manifest_request("dots", bucket, ["a.csv", entry])
    before = set(bucket.keys())
    with pytest.raises(SpecError) as err:
        run(request, tmp_path)
    b = bucket.name
    assert str(err.value) == (
        f"1 validation error detected: Value 's3://{b}/manifest.json' at "
        "'transformInput.dataSource.s3DataSource.s3Uri' failed to satisfy constraint: input object "
        f"s3://{b}/in/{entry} would be written to s3://{b}/out/{entry}.out, but its key relative to the "
        f"input, {entry!r}, has a {segment!r} path segment: where keys are paths (a local folder) that leads "
        f"elsewhere, out of S3OutputPath s3://{b}/out for '..', and S3-compatible stores such as SeaweedFS "
        "refuse the key; change its manifest entry so that it has no '.' or '..' segment"
    )
    assert set(bucket.keys()) == before and bucket.open_uploads() == []


@pytest.mark.usefixtures("ray_local")
def test_manifest_entries_with_slashes_unicode_and_long_names(bucket: Bucket, tmp_path: Path) -> None:
    bodies = {"lead.csv": b"1,1\n", "sub/double.csv": b"2,2\n", UNICODE: b"3,3\n", LONG: b"4,4\n"}
    for rel, body in bodies.items():
        bucket.put(f"in/{rel}", body)
    # A leading "/" is dropped from the output's name (docs/contract.md §4.1); "//" is merged by the store.
    request = manifest_request("manifest-keys", bucket, ["/lead.csv", "sub//double.csv", UNICODE, LONG])
    before = set(bucket.keys())
    record = run(request, tmp_path)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert set(bucket.keys()) - before == {f"out/{rel}.out" for rel in bodies}
    for rel, body in bodies.items():
        assert bucket.get(f"out/{rel}.out") == sums(body), rel
    assert bucket.open_uploads() == []


def test_manifest_entries_that_one_store_would_merge_are_refused(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/x/y.csv", b"1,2\n")
    request = manifest_request("merged", bucket, ["x/y.csv", "x//y.csv"])
    with pytest.raises(SpecError) as err:
        run(request, tmp_path)
    b = bucket.name
    assert (
        f"input objects s3://{b}/in/x/y.csv and s3://{b}/in/x//y.csv would both write "
        f"s3://{b}/out/x/y.csv.out and s3://{b}/out/x//y.csv.out, one object where keys are paths; each "
        "input object must map to its own output"
    ) in str(err.value)
    assert bucket.keys("out/") == []


# --- file:// storage ------------------------------------------------------------------------------


@pytest.fixture
def local_outputs(tmp_path: Path) -> Path:
    """A folder for file:// outputs, inside a sandbox folder that must stay otherwise untouched."""
    (tmp_path / "sandbox" / "out").mkdir(parents=True)
    return tmp_path / "sandbox" / "out"


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_file_storage_keeps_odd_keys_in_their_folder(bucket: Bucket, local_outputs: Path) -> None:
    """The plan names file:// outputs exactly as S3 ones; each lands inside the output folder."""
    rels = ["lead.csv", "sub/double.csv", UNICODE, LONG]
    for rel in rels:
        bucket.put(f"in/{rel}", b"1\n")
    request = manifest_request("local", bucket, ["/lead.csv", "sub//double.csv", *rels[2:]])
    spec = parse_transform_job(request)
    spec = dataclasses.replace(
        spec,
        transform_output=dataclasses.replace(spec.transform_output, s3_output_path=f"file://{local_outputs}"),
    )
    planned = plan_inputs(spec, storage_for(spec.transform_input.s3_uri))
    for obj in planned:
        storage_for(obj.output_uri).put_bytes(obj.output_uri, b"x")
    assert files_under(local_outputs.parent) == {f"out/{rel}.out" for rel in rels}


@pytest.mark.parametrize("key", ["../escape.out", "a/../../escape.out", "./a.out", "a/./b.out", "a/.."])
def test_file_writer_refuses_keys_with_dot_segments(local_outputs: Path, key: str) -> None:
    uri = f"file://{local_outputs}/{key}"
    segment = next(p for p in key.split("/") if p in (".", ".."))
    with pytest.raises(StorageError) as err:
        LocalStorage().open_writer(uri)
    assert str(err.value) == (
        f"file URI {uri!r} has a {segment!r} segment after a folder name: the object would be written "
        "elsewhere (out of its folder for '..'), not at the key given; name it without '.' or '..' segments"
    )
    assert files_under(local_outputs.parent.parent) == set()  # not even a temporary file


def test_file_writer_accepts_a_relative_path_that_starts_with_dots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    LocalStorage().put_bytes("file://../elsewhere/a.out", b"x")  # where a relative path starts, not a key
    assert (tmp_path / "elsewhere" / "a.out").read_bytes() == b"x"


def test_a_manifest_entry_with_dot_segments_never_reaches_file_storage(
    bucket: Bucket, local_outputs: Path
) -> None:
    request = manifest_request("local-dots", bucket, ["../escape.csv"])
    spec = parse_transform_job(request)
    spec = dataclasses.replace(
        spec,
        transform_output=dataclasses.replace(spec.transform_output, s3_output_path=f"file://{local_outputs}"),
    )
    with pytest.raises(SpecError, match=r"has a '\.\.' path segment: .* out of S3OutputPath file://"):
        plan_inputs(spec, storage_for(spec.transform_input.s3_uri))
    assert files_under(local_outputs.parent) == set()


# --- model archives -------------------------------------------------------------------------------


BODY = b"x = 1\n"


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(BODY) if kind == tarfile.REGTYPE else 0
    return info


def write_tarball(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A model archive: a working code/inference.py, then ``members``."""
    code = tarfile.TarInfo("code/inference.py")
    code.size = len(SUM_MODEL.encode())
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(code, io.BytesIO(SUM_MODEL.encode()))
        for info in members:
            tar.addfile(info, io.BytesIO(BODY) if info.isfile() else None)
    return path


LEAVES = "its path leaves the model folder"
LINKS = "links are not allowed in model archives"
UNSAFE = {
    "absolute-path": ("{tmp}/escape-absolute.py", tarfile.REGTYPE, "", LEAVES),
    "dotdot": ("../escape-dotdot.py", tarfile.REGTYPE, "", LEAVES),
    "dotdot-inside": ("code/../../escape-inside.py", tarfile.REGTYPE, "", LEAVES),
    "symlink-out": ("code/link.py", tarfile.SYMTYPE, "{tmp}/escape-target.py", LINKS),
    "symlink-relative": ("code/up", tarfile.SYMTYPE, "../..", LINKS),
    "hardlink": ("code/hard.py", tarfile.LNKTYPE, "/etc/passwd", LINKS),
    "fifo": ("code/pipe", tarfile.FIFOTYPE, "", "only files and folders are allowed in model archives"),
    "device": ("code/dev", tarfile.CHRTYPE, "", "only files and folders are allowed in model archives"),
}


@pytest.mark.parametrize(("name", "kind", "link", "reason"), UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_model_archives_are_refused_before_extracting(
    tmp_path: Path, name: str, kind: bytes, link: str, reason: str
) -> None:
    name, link = name.replace("{tmp}", str(tmp_path)), link.replace("{tmp}", str(tmp_path))
    archive = write_tarball(tmp_path / "model.tar.gz", [member(name, kind, link)])
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as err:
        ensure_model_dir(str(archive), cache)
    assert str(err.value) == (
        f"ModelDataUrl {archive}: cannot extract the model archive: member {name!r}: {reason}"
    )
    # Nothing written: no member outside, no model folder (finished or half-done) in the cache.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "model.tar.gz"]
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.usefixtures("ray_local")
def test_a_job_with_an_unsafe_model_archive_fails_naming_the_member(bucket: Bucket, tmp_path: Path) -> None:
    archive = write_tarball(tmp_path / "model.tar.gz", [member("../escape.py")])
    bucket.put("model/model.tar.gz", archive.read_bytes())
    bucket.put("in/a.csv", b"1,2\n")
    url = f"s3://{bucket.name}/model/model.tar.gz"
    record = run(job_request("unsafe-model", bucket.name), tmp_path, model_request("sum", url))
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason == (
        f"ClientError: ModelDataUrl {url}: cannot extract the model archive: member '../escape.py': {LEAVES}"
    )
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []
    assert not (tmp_path / "home" / "escape.py").exists()


def test_a_model_prefix_with_odd_keys_is_copied_into_the_cache_only(bucket: Bucket, tmp_path: Path) -> None:
    keys = {"code/inference.py": SUM_MODEL.encode(), UNICODE: b"u", LONG: b"l", "deep//merged.bin": b"m"}
    for key, body in keys.items():
        bucket.put(f"model/{key}", body)
    cache = tmp_path / "cache"
    model_dir = ensure_model_dir(f"s3://{bucket.name}/model/", cache)
    assert model_dir.parent == cache
    files = {str(p.relative_to(model_dir)): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert files == {
        "code/inference.py": SUM_MODEL.encode(),
        UNICODE: b"u",
        LONG: b"l",
        "deep/merged.bin": b"m",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_model_prefix_whose_key_is_also_a_folder_is_refused(bucket: Bucket, tmp_path: Path) -> None:
    """S3 holds ``model/a`` and ``model/a/b`` side by side; a model folder cannot."""
    bucket.put("model/a", b"x")
    bucket.put("model/a/b", b"y")
    url = f"s3://{bucket.name}/model/"
    with pytest.raises(ModelError) as err:
        ensure_model_dir(url, tmp_path / "cache")
    assert str(err.value) == (
        f"ModelDataUrl {url}: object {url}a/b cannot be stored as 'a/b' in the model folder: File exists "
        "(is one key also the folder of another?)"
    )
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


# --- what the CLI prints --------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_run_prints_a_failure_reason_with_brackets_verbatim(
    bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.put("in/[/x] [red]bad.csv", b"1,2\n\xff\n")  # not UTF-8: the object fails, naming its key
    (tmp_path / "job.json").write_text(json.dumps(job_request("brackets", bucket.name)))
    model = model_request("sum", str(write_model(tmp_path / "model", SUM_MODEL)))
    (tmp_path / "model.json").write_text(json.dumps(model))
    monkeypatch.setenv("BATCH_TRANSFORM_HOME", str(tmp_path / "home"))
    code = cli.main(
        ["run", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"), "--no-progress"]
    )
    assert code == 1
    assert (
        f"FailureReason: ClientError: {bucket.name}/in/[/x] [red]bad.csv: payload 0: "
        in capsys.readouterr().out
    )
