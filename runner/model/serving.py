"""How a worker's model server is launched (runner/model/container.py runs it): the process-mode
command, ``docker run`` for Docker mode and whether Docker can run an image here, a free port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from runner.errors import WorkerStartupError

CONTAINER_MODEL_DIR = "/opt/ml/model"
CONTAINER_PORT = 8080
DOCKER_CHECK_TIMEOUT_S = 10.0
BODY_PREVIEW_CHARS = 300

# ---- what to run ---------------------------------------------------------------------------------


def serve_argv(model_dir: Path, serve_command: str | None) -> list[str]:
    """The process-mode command: ``serve_command`` split like a shell, else ``<model_dir>/serve``
    (run through its ``#!`` line when the executable bit was lost, as S3 prefixes lose it)."""
    if serve_command:
        argv = shlex.split(serve_command)
        if not argv:
            raise WorkerStartupError("serve_command (--serve-command) is empty; give the command to run")
        return argv
    serve = model_dir / "serve"
    if serve.is_file():
        if os.access(serve, os.X_OK):
            return [str(serve)]
        with open(serve, "rb") as f:
            first = f.readline(256)
        if first.startswith(b"#!"):
            return [*shlex.split(first[2:].decode("utf-8", "replace").strip()), str(serve)]
        raise WorkerStartupError(
            f"{serve} is not executable and has no #! line; make it executable or set serve_command "
            "(--serve-command)"
        )
    raise WorkerStartupError(
        f"the model runs in a serving container, but there is no `serve` executable at the top of the model "
        f"folder {model_dir}; set serve_command (--serve-command, e.g. 'python path/to/serve'), or run the "
        "model in-process with model_runtime='hooks' (--model-runtime hooks) and code/inference.py"
    )


def docker_unavailable(image: str | None) -> str | None:
    """Why Docker mode cannot run ``image`` here, or None when it can."""
    if not image:
        return "the model has no Image"
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH"
    checks = (
        ([docker, "info", "--format", "{{.ServerVersion}}"], "docker info failed (no reachable daemon)"),
        ([docker, "image", "inspect", "--format", "{{.Id}}", image], f"image {image} is not present locally"),
    )
    for argv, reason in checks:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=DOCKER_CHECK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{reason}: {e}"
        if done.returncode != 0:
            return f"{reason}: {done.stderr.decode('utf-8', 'replace').strip()[:200]}"
    return None


def docker_argv(
    image: str,
    name: str,
    port: int,
    model_dir: Path,
    env_names: list[str],
    cpus: float,
    gpus: str | None,
) -> list[str]:
    """``docker run`` for one worker. Variables are passed by name (``-e NAME``), their values taken
    from the docker CLI's own environment, so no value appears on a command line."""
    argv = ["docker", "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
    argv += ["-v", f"{model_dir.resolve()}:{CONTAINER_MODEL_DIR}:ro"]
    for key in env_names:
        argv += ["-e", key]
    if cpus > 0:
        argv += ["--cpus", f"{cpus:g}"]
    if gpus:
        argv += ["--gpus", f"device={gpus}"]
    return [*argv, image, "serve"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies (Linux), so a killed actor leaves no
    server behind; a Docker CLI passes the signal on to its container."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
