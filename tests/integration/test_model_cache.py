"""The per-node model cache with the artifacts' key read once by the driver (``artifact_key``): a
worker whose node has them cached makes no S3 call, and artifacts that changed in between are
refused, not mixed up. Real S3 (the embedded SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ModelError
from runner.model.artifacts import artifact_key, ensure_model_dir
from tests.conftest import Bucket
from tests.faults.test_bad_input import tarball


def test_cached_artifacts_are_used_without_reading_s3(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("m/model.tar.gz", tarball({"code/inference.py": b"# v1\n"}))
    url = f"s3://{bucket.name}/m/model.tar.gz"
    key = artifact_key(url)
    assert key is not None and key.startswith(url + "|")
    first = ensure_model_dir(url, tmp_path / "cache", key)
    assert (first / "code" / "inference.py").read_bytes() == b"# v1\n"
    # Gone from S3: with the key, the node's cache still answers (so no S3 call was made) ...
    bucket.client.delete_object(Bucket=bucket.name, Key="m/model.tar.gz")
    assert ensure_model_dir(url, tmp_path / "cache", key) == first
    # ... without it, the artifacts are looked up, and found missing.
    with pytest.raises(ModelError, match=f"ModelDataUrl {url}"):
        ensure_model_dir(url, tmp_path / "cache")
    assert artifact_key(url) is None  # the workers report why, as they fetch


def test_artifacts_changed_after_the_key_was_read_are_refused(bucket: Bucket, tmp_path: Path) -> None:
    url = f"s3://{bucket.name}/m/model.tar.gz"
    bucket.put("m/model.tar.gz", tarball({"code/inference.py": b"# v1\n"}))
    key = artifact_key(url)
    bucket.put("m/model.tar.gz", tarball({"code/inference.py": b"# v2\n"}))
    with pytest.raises(ModelError, match="changed while the job was starting"):
        ensure_model_dir(url, tmp_path / "cache", key)
    assert list((tmp_path / "cache").glob("*/code")) == []  # nothing half-made is kept
    now = ensure_model_dir(url, tmp_path / "cache", artifact_key(url))
    assert (now / "code" / "inference.py").read_bytes() == b"# v2\n"


def test_a_model_prefix_is_keyed_by_its_objects(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("p/code/inference.py", b"# a\n")
    bucket.put("p/weights.bin", b"\x00\x01")
    url = f"s3://{bucket.name}/p/"
    key = artifact_key(url)
    folder = ensure_model_dir(url, tmp_path / "cache", key)
    assert (folder / "weights.bin").read_bytes() == b"\x00\x01"
    bucket.put("p/weights.bin", b"\x02")
    assert artifact_key(url) != key
    assert (
        ensure_model_dir(url, tmp_path / "cache", artifact_key(url)) / "weights.bin"
    ).read_bytes() == b"\x02"
