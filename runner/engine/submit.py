"""``run --ray-address http://head:8265``: the run goes to the cluster as a Ray job (the Ray Jobs API,
as ``ray job submit`` sends it) instead of driving the cluster from this machine.

The request files travel in the job's working_dir; the entrypoint is this same ``batch-transform
run`` on the head, where RAY_ADDRESS names the cluster, so the job runs with the cluster's rules and
each node's own AWS credentials. Its log is streamed here as it comes; Ctrl-C stops the Ray job
(the transform job then ends Stopped, its uploads aborted); the exit status is the remote run's.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.engine.credentials import TRAVELLING
from runner.errors import WorkerStartupError

ENTRYPOINT = "batch-transform"
STOP_WAIT_S = 60.0
AGENT_WAIT_S = 60.0  # for a just-started head's job agent
AGENT_RETRY_S = 1.0
STOPPED = 130  # the exit status of a run stopped with Ctrl-C, as a shell reports SIGINT


def submit_run(
    address: str,
    argv: Sequence[str],
    files: Mapping[str, bytes],
    name: str,
    on_text: Callable[[str], None],
    on_note: Callable[[str], None],
) -> int:
    """Submit ``batch-transform *argv`` as a Ray job on the cluster whose Jobs API is at ``address``,
    with ``files`` (name -> content) in its working directory; stream its log to ``on_text`` and
    return its exit status."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from runner.engine.job import use_ray_token

    use_ray_token()
    # Where S3 is travels; credentials never go in a runtime_env (Ray shows it in its logs and dashboard).
    env_vars = {k: os.environ[k] for k in TRAVELLING if os.environ.get(k)}
    # A stopped Ray job gets SIGINT, as Ctrl-C here, and time to end its objects cleanly (the job then
    # ends Stopped, no partial output) before Ray's SIGKILL; Ray's defaults are SIGTERM and 3 s.
    env_vars.update(RAY_JOB_STOP_SIGNAL="SIGINT", RAY_JOB_STOP_WAIT_TIME_S=str(int(STOP_WAIT_S)))
    with tempfile.TemporaryDirectory(prefix="batch-transform-submit-") as work:
        for file_name, content in files.items():
            (Path(work) / file_name).write_bytes(content)
        submission_id = f"batch-transform-{name}-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                client = JobSubmissionClient(address)
                client.submit_job(
                    entrypoint=shlex.join([ENTRYPOINT, *argv]),
                    submission_id=submission_id,
                    runtime_env={"working_dir": work, "env_vars": env_vars},
                    metadata={"transform_job_name": name},
                )
                break
            except Exception as e:  # connection refused, authentication, a cluster without the Jobs API
                # A head that has just started has no job agent yet: Ray says to try again later.
                if "No available agent" in str(e) and time.monotonic() < deadline:
                    time.sleep(AGENT_RETRY_S)
                    continue
                raise WorkerStartupError(
                    f"cannot submit to the Ray Jobs API at {address}: {type(e).__name__}: {e}"
                ) from None
    on_note(
        f"Ray: submitted as Ray job {submission_id} to {address}; the run's log follows "
        f"(`ray job logs {submission_id}` shows it again, `ray job stop {submission_id}` stops it)"
    )
    try:
        asyncio.run(_follow(client, submission_id, on_text))
    except KeyboardInterrupt:
        on_note(f"stopping Ray job {submission_id}")
        client.stop_job(submission_id)
        _wait_terminal(client, submission_id, JobStatus)
        return STOPPED
    info: Any = _wait_terminal(client, submission_id, JobStatus)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    code = getattr(info, "driver_exit_code", None)
    if code is None:  # the entrypoint never ran (runtime_env setup failed, the job was stopped)
        on_note(f"Ray job {submission_id} ended {info.status}: {info.message}")
        return 3
    return int(code)


async def _follow(client: Any, submission_id: str, on_text: Callable[[str], None]) -> None:
    async for text in client.tail_job_logs(submission_id):
        on_text(text)


def _wait_terminal(client: Any, submission_id: str, status: Any) -> Any:
    deadline = time.monotonic() + STOP_WAIT_S + 30  # Ray waits STOP_WAIT_S before its SIGKILL
    while True:
        info = client.get_job_info(submission_id)
        if info.status in (status.SUCCEEDED, status.FAILED, status.STOPPED) or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def remote_argv(argv: Sequence[str], job_file: str, model_file: str | None) -> list[str]:
    """This command's arguments for the run on the head: without --ray-address (the head's
    RAY_ADDRESS names its cluster) and --home (its own), with the request files by their names in the
    working directory."""
    out: list[str] = []
    skip = False
    replaced_job = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--ray-address", "--home"):
            skip = True
            continue
        if arg.startswith(("--ray-address=", "--home=")):
            continue
        if arg == "--model" and model_file is not None and i + 1 < len(argv):
            out += ["--model", "model.json"]
            skip = True
            continue
        if arg.startswith("--model="):
            out.append("--model=model.json")
            continue
        if not replaced_job and arg == job_file:
            out.append("job.json")
            replaced_job = True
            continue
        out.append(arg)
    return out
