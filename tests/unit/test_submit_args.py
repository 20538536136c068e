"""The arguments a Jobs API run passes to `batch-transform run` on the head (runner/engine/submit.py):
the user's own, less the address and home, with the request files by their names in the working dir."""

from __future__ import annotations

from runner.config import is_jobs_api
from runner.engine.submit import remote_argv


def test_the_head_gets_the_users_flags_with_the_request_files_renamed() -> None:
    argv = [
        "--home", "/tmp/h", "-v", "run", "/data/my job.json", "--model", "/data/model.json",
        "--ray-address", "http://head:8265", "--job-name", "night-1", "--workers-per-instance", "2",
    ]  # fmt: skip
    assert remote_argv(argv, "/data/my job.json", "/data/model.json") == [
        "-v", "run", "job.json", "--model", "model.json",
        "--job-name", "night-1", "--workers-per-instance", "2",
    ]  # fmt: skip


def test_equals_forms_and_a_run_without_a_model() -> None:
    argv = ["--home=/h", "run", "job.json", "--ray-address=https://head:8265", "--no-progress"]
    assert remote_argv(argv, "job.json", None) == ["run", "job.json", "--no-progress"]
    argv = ["run", "a.json", "--model=/m/model.json", "--ray-address", "http://h:8265"]
    assert remote_argv(argv, "a.json", "/m/model.json") == ["run", "job.json", "--model=model.json"]


def test_only_http_addresses_are_the_jobs_api() -> None:
    assert is_jobs_api("http://head:8265") and is_jobs_api("https://head:8265")
    assert not any(is_jobs_api(a) for a in (None, "", "auto", "head:6379", "ray://head:10001"))
