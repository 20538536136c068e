"""What AWS settings travel from the driver to Ray's nodes (runner/engine/credentials.py): all of
them on the driver's own Ray; on a joined cluster only where S3 is, unless the user forwards keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.engine.credentials import AwsEnvironment, aws_environment
from runner.errors import StorageError

DRIVER = {
    "AWS_ACCESS_KEY_ID": "AKIADRIVER",
    "AWS_SECRET_ACCESS_KEY": "driver-secret",
    "AWS_SESSION_TOKEN": "driver-token",
    "AWS_ENDPOINT_URL_S3": "http://s3.example:8333",
    "AWS_REGION": "eu-west-1",
    "AWS_RETRY_MODE": "adaptive",
    "AWS_PROFILE": "driver-profile",
}


@pytest.fixture
def driver_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in DRIVER.items():
        monkeypatch.setenv(name, value)
    # The profile names nothing on disk: botocore resolves the keys from the environment.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def test_the_drivers_own_ray_gets_its_whole_aws_environment(driver_env: None) -> None:
    aws = aws_environment(own_ray=True, forward_credentials=False)
    assert not aws.node_chain
    assert {k: aws.settings[k] for k in DRIVER} == DRIVER
    s3 = aws.s3()
    assert (s3.access_key_id, s3.endpoint_url, s3.region) == (
        "AKIADRIVER",
        "http://s3.example:8333",
        "eu-west-1",
    )


def test_a_joined_cluster_gets_where_s3_is_but_not_the_drivers_keys(driver_env: None) -> None:
    aws = aws_environment(own_ray=False, forward_credentials=False)
    assert aws.node_chain and not aws.carries_keys
    assert aws.settings == {
        "AWS_ENDPOINT_URL_S3": "http://s3.example:8333",
        "AWS_REGION": "eu-west-1",
        "AWS_RETRY_MODE": "adaptive",
    }
    assert "secret" not in repr(aws) and "AKIADRIVER" not in repr(aws)


def test_forwarding_sends_the_keys_botocore_resolves(
    driver_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StorageError, match=r"cannot read this process's AWS credentials: .*driver-profile"):
        aws_environment(own_ray=False, forward_credentials=True)  # a profile that does not exist
    monkeypatch.delenv("AWS_PROFILE")
    aws = aws_environment(own_ray=False, forward_credentials=True)
    assert aws.carries_keys
    assert aws.settings["AWS_ACCESS_KEY_ID"] == "AKIADRIVER"
    assert aws.settings["AWS_SECRET_ACCESS_KEY"] == "driver-secret"
    assert aws.settings["AWS_SESSION_TOKEN"] == "driver-token"
    monkeypatch.setenv("AWS_PROFILE", "driver-profile")
    # A profile's name means nothing on another machine: it never travels.
    assert "AWS_PROFILE" not in aws_environment(own_ray=False, forward_credentials=False).settings


def test_forwarding_without_any_credentials_is_refused(
    driver_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="--forward-aws-credentials: this process has no AWS credentials"):
        aws_environment(own_ray=False, forward_credentials=True)


def test_a_node_keeps_its_own_keys_under_the_settings_that_travelled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANODE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "node-secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    travelled = AwsEnvironment(
        {"AWS_ENDPOINT_URL_S3": "http://s3.example:8333", "AWS_REGION": "eu-west-1"}, True
    )
    s3 = travelled.s3()
    assert (s3.access_key_id, s3.endpoint_url, s3.region) == (
        "AKIANODE",
        "http://s3.example:8333",
        "eu-west-1",
    )
    with travelled.applied():
        assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIANODE"
        assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://s3.example:8333"
    assert "AWS_ENDPOINT_URL_S3" not in os.environ and os.environ["AWS_REGION"] == "us-west-2"
    # The driver's own Ray: exactly the driver's settings, none of the process's left over.
    exact = AwsEnvironment({"AWS_REGION": "eu-west-1"})
    assert exact.s3().access_key_id is None
    with exact.applied():
        assert "AWS_ACCESS_KEY_ID" not in os.environ
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIANODE"
