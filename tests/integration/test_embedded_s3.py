"""The embedded S3 (SeaweedFS) as the CLI and the test fixture use it: start, env, stop, restart."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.errors import StorageError, TransientStorageError
from runner.storage.embedded import EmbeddedS3, EmbeddedS3Info
from runner.storage.s3 import S3Settings, S3Storage

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def client_for(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def test_start_env_stop_and_restart_with_the_same_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = Path("home") / "s3"  # relative, as `make demo` gives it; created by start
    server = EmbeddedS3(data_dir)
    t0 = time.monotonic()
    info = server.start()
    try:
        startup_s = time.monotonic() - t0
        print(f"embedded S3 answered after {startup_s:.1f} s")
        assert info.endpoint == f"http://127.0.0.1:{info.ports.s3}"
        assert set(info.env) == {
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        }
        assert info.secret_access_key not in repr(info)
        assert stat.S_IMODE((data_dir / "identities.json").stat().st_mode) == 0o600
        assert json.loads((data_dir / "server.json").read_text())["pid"] == info.pid
        assert server.start() == info  # already running: the same server

        # Another process (the CLI's `s3 env`) sees the same server through the data dir.
        assert EmbeddedS3(data_dir).env() == info.env
        client = client_for(info.env)
        client.create_bucket(Bucket="kept")
        client.put_object(Bucket="kept", Key="a/b.csv", Body=b"1,2\n")
        client.put_object(Bucket="kept", Key="big.bin", Body=os.urandom(64 * MiB))
        storage = S3Storage(
            S3Settings(info.endpoint, "us-east-1", info.access_key_id, info.secret_access_key)
        )
        stream = storage.iter_chunks("s3://kept/big.bin", chunk_size=MiB)
        assert len(next(stream)) == MiB
    finally:
        assert server.stop() is True
    # The server died mid-stream: the rest of the read fails as a storage error, not a botocore one.
    with pytest.raises(TransientStorageError, match=r"s3://kept/big\.bin"):
        for _ in stream:
            pass
    assert not alive(info.pid)
    assert server.status() is None and server.stop() is False
    with pytest.raises(StorageError, match="batch-transform s3 start"):
        server.env()

    again = EmbeddedS3(data_dir).start()
    try:
        assert (again.access_key_id, again.secret_access_key) == (info.access_key_id, info.secret_access_key)
        assert again.endpoint == info.endpoint and again.pid != info.pid
        body = client_for(again.env).get_object(Bucket="kept", Key="a/b.csv")["Body"].read()
        assert body == b"1,2\n"
    finally:
        assert EmbeddedS3(data_dir).stop() is True
    assert not alive(again.pid)


def test_two_servers_run_side_by_side(s3_server: EmbeddedS3Info, tmp_path: Path) -> None:
    other = EmbeddedS3(tmp_path / "s3")
    info = other.start()
    try:
        assert info.endpoint != s3_server.endpoint
        assert set(vars(info.ports).values()).isdisjoint(vars(s3_server.ports).values())
        assert info.access_key_id != s3_server.access_key_id
        for env in (info.env, s3_server.env):
            client_for(env).list_buckets()
    finally:
        other.stop()


def test_stop_never_signals_a_process_that_is_not_its_server(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        ports = dict.fromkeys(
            ["s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"], 1
        )
        (tmp_path / "server.json").write_text(
            json.dumps({"pid": stranger.pid, "endpoint": "x", "ports": ports})
        )
        server = EmbeddedS3(tmp_path)
        assert server.status() is None
        assert server.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fatal: volume dir is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = EmbeddedS3(tmp_path / "s3", weed=fake)
    with pytest.raises(StorageError, match=r"exited with code 3(.|\n)*volume dir is broken"):
        server.start(timeout_s=10)
    assert server.status() is None
