"""Bring-your-own-container: the SageMaker serving contract (docs/contract.md §5.1) on every worker.

Each model worker starts its own model server and talks to it over HTTP on 127.0.0.1:

* process mode (the default): the server is a subprocess of the worker: ``serve_command`` as given
  (split like a shell, no shell), else the ``serve`` executable at the top of the model folder, run
  with no arguments as ``docker run <image> serve`` runs it in an image without an ENTRYPOINT. It
  runs in the directory the job was started from, with the runner's Python first on ``PATH``, and
  with SageMaker's environment: model Environment, then the platform variables, then the job
  Environment (the job's value wins), plus ``SAGEMAKER_BIND_TO_PORT=<a free port>`` and
  ``SM_MODEL_DIR=<the extracted model folder>`` (SageMaker's ``/opt/ml/model`` cannot be written
  here, so a server reads its artifacts from ``$SM_MODEL_DIR``, falling back to ``/opt/ml/model``).
* Docker mode: when no ``serve_command`` is given, the ``docker`` CLI reaches a daemon and the
  model's Image is present locally, the worker runs ``docker run --rm <image> serve`` with the model
  folder mounted read-only at ``/opt/ml/model``, port 8080 published on a free 127.0.0.1 port, the
  same environment, and the worker's CPU share (``--cpus``) and GPUs (``--gpus``).

The server's stdout and stderr go to ``<home>/logs/<job>/<worker>.log``; its last lines are in every
error message about it. Health: ``GET /ping`` (2 s per attempt, at most every 1 s) until 200, for
``container_startup_timeout_s``. ``GET /execution-parameters`` is read once (5 s): a non-200 answer, a
timeout or no server answer means "none"; of a 200 answer, what SageMaker could not use is ignored, as
SageMaker ignores it, and said so in the job's notes (runner/contract/parameters.py). ``POST
/invocations`` per payload with ``InvocationsTimeoutInSeconds`` and ``InvocationsMaxRetries``:
connection errors, timeouts and 5xx are retried, other statuses fail at once; a server that died is
restarted (at most ``MAX_RESTARTS`` times per worker) before the retry, so a payload is answered exactly
once. ``MaxPayloadInMB = 0`` sends bodies with chunked transfer encoding.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import urllib3

from runner.errors import ContainerError, InvocationError, WorkerStartupError
from runner.model.runtime import RuntimeSettings
from runner.model.serving import (
    BODY_PREVIEW_CHARS,
    _die_with_parent,
    docker_argv,
    docker_unavailable,
    free_port,
    serve_argv,
)

PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
MODEL_DIR_ENV = "SM_MODEL_DIR"
PING_TIMEOUT_S = 2.0
PING_INTERVAL_S = 1.0
FIRST_PING_INTERVAL_S = 0.1  # doubles up to PING_INTERVAL_S: a quick server is seen quickly
EXECUTION_PARAMETERS_TIMEOUT_S = 5.0
MAX_RESTARTS = 5  # per worker; a server that keeps dying is not restarted forever
DEATH_WAIT_S = 0.5  # after a connection error: is the server exiting?
STOP_GRACE_S = 5.0
RETRY_BACKOFF_S = 0.2
LOG_TAIL_LINES = 8
LOG_TAIL_CHARS = 500
CHUNK_BYTES = 1024 * 1024


# ---- one model server -------------------------------------------------------------------------


class ModelServer:
    """One worker's model server: started, health-checked, invoked, restarted, stopped."""

    def __init__(
        self,
        *,
        model_dir: Path,
        image: str | None,
        environ: Mapping[str, str],
        sagemaker_env: Mapping[str, str],
        settings: RuntimeSettings,
        content_type: str | None,
        accept: str | None,
        label: str,
        cpus: float = 0.0,
    ) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.label = label
        self._image = image
        self._environ = dict(environ)
        self._sagemaker_env = dict(sagemaker_env)
        self._cpus = cpus
        self._headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v}
        self.restarts = 0
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: urllib3.HTTPConnectionPool | None = None
        self._log: IO[bytes] | None = None
        log_dir = Path(settings.log_dir) if settings.log_dir else None
        try:
            if log_dir is None:
                raise OSError("no log_dir")
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            import tempfile

            log_dir = Path(tempfile.mkdtemp(prefix="batch-transform-logs-"))
        self.log_path = log_dir / f"{label}.log"
        # Docker only when the user named no command and the image is here to run.
        self.docker_reason = "serve_command is set" if settings.serve_command else docker_unavailable(image)
        self.kind = "docker" if self.docker_reason is None else "process"
        self._argv = serve_argv(model_dir, settings.serve_command) if self.kind == "process" else []

    # -- lifecycle --

    def start(self) -> None:
        """Start the server and wait until ``/ping`` answers 200 (WorkerStartupError otherwise)."""
        self.port = free_port()
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open while the server runs)
        if self.kind == "docker":
            assert self._image is not None
            name = f"batch-transform-{self.label}-{os.getpid()}-{self.restarts}"
            gpus = self._environ.get("CUDA_VISIBLE_DEVICES") or None
            argv = docker_argv(
                self._image, name, self.port, self.model_dir, sorted(self._sagemaker_env), self._cpus, gpus
            )
            env = {**os.environ, **self._sagemaker_env}
            cwd = None
        else:
            argv = self._argv
            env = {
                **self._environ,
                "PATH": os.pathsep.join([os.path.dirname(sys.executable), self._environ.get("PATH", "")]),
                PORT_ENV: str(self.port),
                MODEL_DIR_ENV: str(self.model_dir),
            }
            cwd = self.settings.cwd if self.settings.cwd and os.path.isdir(self.settings.cwd) else None
        self._note(f"starting ({self.kind}, port {self.port}): {shlex.join(argv)}")
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the actor runs it on its main thread
            )
        except OSError as e:
            raise WorkerStartupError(
                f"cannot start the model server {shlex.join(argv)}: {e}; check serve_command "
                "(--serve-command) or the model folder's `serve`"
            ) from None
        self._http = urllib3.HTTPConnectionPool("127.0.0.1", self.port, maxsize=1, retries=False)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        timeout = self.settings.startup_timeout_s
        deadline = time.monotonic() + timeout
        interval = FIRST_PING_INTERVAL_S
        last = "no answer"
        while True:
            code = self._proc.poll() if self._proc is not None else None
            if code is not None:
                self.stop()
                raise WorkerStartupError(
                    f"the model server exited with code {code} before it became healthy "
                    f"(GET /ping never answered 200). {self.tail_text()}"
                )
            try:
                r = self._get("/ping", PING_TIMEOUT_S)
                if r.status == 200:
                    self._note("healthy")
                    return
                last = f"status {r.status}"
            except urllib3.exceptions.HTTPError as e:
                last = type(e).__name__
            if time.monotonic() >= deadline:
                self.stop()
                raise WorkerStartupError(
                    f"the model server never became healthy: GET /ping did not answer 200 within "
                    f"{timeout:g}s (last: {last}); raise container_startup_timeout_s "
                    f"(--container-startup-timeout) if it needs longer. {self.tail_text()}"
                )
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 2, PING_INTERVAL_S)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if self._http is not None:
            self._http.close()
            self._http = None
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _restart_if_dead(self, name: str, index: int) -> None:
        proc = self._proc
        code = proc.poll() if proc is not None else -1
        if code is None:
            return
        if self.restarts >= MAX_RESTARTS:
            raise ContainerError(
                f"{name}: payload {index}: the model server exited (code {code}) and was already restarted "
                f"{self.restarts} times; not restarting it again. {self.tail_text()}"
            )
        self.restarts += 1
        self._note(f"exited with code {code}; restart {self.restarts} of at most {MAX_RESTARTS}")
        self.stop()
        try:
            self.start()
        except WorkerStartupError as e:
            raise ContainerError(
                f"{name}: payload {index}: restarting the model server failed: {e}"
            ) from None

    # -- requests --

    def _get(self, path: str, timeout_s: float) -> Any:
        assert self._http is not None, "start() first"
        return self._http.urlopen(
            "GET", path, retries=False, timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s)
        )

    def execution_parameters(self) -> Any:
        """``GET /execution-parameters``: None when the server has none (non-200, timeout, no answer);
        else the decoded JSON, or the raw body when it is not JSON (what of it is usable, and what is
        ignored, is runner/contract/parameters.py's to say)."""
        try:
            r = self._get("/execution-parameters", EXECUTION_PARAMETERS_TIMEOUT_S)
        except urllib3.exceptions.HTTPError as e:
            self._note(f"GET /execution-parameters: {type(e).__name__}; using the defaults")
            return None
        if r.status != 200:
            self._note(f"GET /execution-parameters: status {r.status}; using the defaults")
            return None
        try:
            params = json.loads(r.data)
        except (ValueError, UnicodeDecodeError):
            params = bytes(r.data)
        self._note(f"GET /execution-parameters: {params!r}")
        return params

    def invoke(self, data: bytes, name: str, index: int) -> bytes:
        """``POST /invocations`` with the job's timeout and retries; the 200 body."""
        timeout = float(self.settings.invocations_timeout_s)
        retries = self.settings.invocations_max_retries
        attempts = 1 + retries
        budget = f"InvocationsMaxRetries={retries}"
        last = ""
        timed_out = 0
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(RETRY_BACKOFF_S * (attempt - 1))
            self._restart_if_dead(name, index)
            assert self._http is not None
            try:
                r = self._http.urlopen(
                    "POST",
                    "/invocations",
                    body=_chunks(data) if self.settings.chunked else data,
                    headers=self._headers,
                    chunked=self.settings.chunked,
                    retries=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                )
            except urllib3.exceptions.TimeoutError:
                timed_out += 1
                last = "timeout"
                self._note(f"{name}: payload {index}: attempt {attempt}: no response within {timeout:g}s")
                continue
            except urllib3.exceptions.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                self._note(f"{name}: payload {index}: attempt {attempt}: {last}")
                if self._proc is not None:  # a server that is exiting is restarted before the next attempt
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(DEATH_WAIT_S)
                continue
            if 200 <= r.status < 300:
                return bytes(r.data)
            if r.status < 500:
                raise InvocationError(
                    _status_message(
                        name, index, r.status, r.data, f"{attempt} attempt(s); {r.status} is not retried"
                    )
                )
            last = f"status {r.status}"
            self._note(f"{name}: payload {index}: attempt {attempt}: status {r.status}")
            if attempt == attempts:
                raise InvocationError(
                    _status_message(name, index, r.status, r.data, f"{attempts} attempt(s), {budget}")
                )
        if last == "timeout":
            raise ContainerError(
                f"{name}: Unable to get response from algorithm: payload {index}: no response within "
                f"InvocationsTimeoutInSeconds={timeout:g} on {timed_out} of {attempts} attempt(s) "
                f"({budget}). {self.tail_text()}"
            )
        raise ContainerError(
            f"{name}: Unable to get response from algorithm: payload {index}: {last} after {attempts} "
            f"attempt(s) ({budget}). {self.tail_text()}"
        )

    # -- logs --

    def _note(self, text: str) -> None:
        if self._log is not None and not self._log.closed:
            self._log.write(f"[runner {time.strftime('%H:%M:%S')}] {self.label}: {text}\n".encode())
            self._log.flush()

    def tail(self) -> list[str]:
        """The server log's last lines (the runner's own notes included)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 16 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]

    def tail_text(self) -> str:
        text = " | ".join(self.tail())
        if len(text) > LOG_TAIL_CHARS:
            text = "…" + text[-LOG_TAIL_CHARS:]
        return f"Last lines of {self.log_path}: {text or '(empty)'}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.kind, "port": self.port, "server_log": str(self.log_path)}
        if self.kind == "process":
            out["serve_command"] = shlex.join(self._argv)
        else:
            out["image"] = self._image
        if self.docker_reason and self.kind == "process":
            out["docker"] = f"not used: {self.docker_reason}"
        return out


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])


def _status_message(name: str, index: int, status: int, body: bytes, attempts: str) -> str:
    """SageMaker's data-log lines for a failed invocation (docs/contract.md §5.1)."""
    lines = [f"{name}: ClientError: {status} (payload {index}, {attempts})", f"{name}: Message:"]
    text = body[: BODY_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:BODY_PREVIEW_CHARS]
    lines += [f"{name}: {line}" for line in text.splitlines()[:5]]
    return "\n".join(lines)
