"""The control plane over HTTP: AWS JSON 1.1 as botocore sends it (``POST /``,
``X-Amz-Target: SageMaker.<Operation>``, ``Content-Type: application/x-amz-json-1.1``), each request
SigV4-verified before ``ControlPlane.call`` sees it; the CloudWatch Logs operations the SageMaker SDK
tails a job with (``Logs_20140328.<Operation>``, signed for ``logs``) go to ``LogsPlane``; errors
as AWS sends them (HTTP 400, ``{"__type": "<Code>", "message": "<text>"}``). ``serve`` runs it until
SIGINT / SIGTERM.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from runner.config import RunnerConfig
from runner.server.api import TARGET_PREFIX, ApiError, ControlPlane
from runner.server.faults import FaultMode, SlowSageMaker, hold
from runner.server.logs import SIGNING_NAME as LOGS_SIGNING_NAME
from runner.server.logs import TARGET_PREFIX as LOGS_TARGET_PREFIX
from runner.server.logs import LogsError, LogsPlane
from runner.server.pages import REALM, Page, allowed, is_page, render
from runner.server.sigv4 import SERVICE, Identity, SignatureError, verify

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 16 * 1024 * 1024

log = logging.getLogger(__name__)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        plane: ControlPlane,
        identities: Mapping[str, Identity],
        pages_need_keys: bool = False,
    ):
        super().__init__(address, ApiHandler)
        self.plane = plane
        self.logs = LogsPlane(plane.store)
        self.identities = dict(identities)
        self.pages_need_keys = pages_need_keys  # served beyond loopback: pages/HTTP Basic with an API key


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        """``GET /metrics``: the jobs' counters for Prometheus (runner/jobs/metrics.py). Unsigned, as
        scrapers send it: counts and job names only. ``GET /`` and ``/jobs/<name>``: the pages
        (runner/server/pages.py). Any other GET is an AWS-style error."""
        path = urlsplit(self.path).path
        if is_page(path):
            self._page(path)
            return
        if path != "/metrics":
            self._handle()
            return
        from runner.jobs.metrics import CONTENT_TYPE, render

        data = render(self.server.plane.store.list_jobs())
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _page(self, path: str) -> None:
        if self.server.pages_need_keys and not allowed(
            self.headers.get("Authorization"), self.server.identities
        ):
            page = Page(
                401, "an API key is needed: user name = access key id, password = secret\n", "text/plain"
            )
        else:
            try:
                page = render(path, self.server.plane.store, self.server.plane.config.data_dir)
            except Exception as e:
                log.exception("page %s failed", path)
                page = Page(500, f"{type(e).__name__}: {e}\n", "text/plain")
        data = page.body.encode()
        self.send_response(page.status)
        self.send_header("Content-Type", page.content_type)
        self.send_header("Content-Length", str(len(data)))
        if page.status == 401:
            self.send_header("WWW-Authenticate", REALM)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        request_id = str(uuid.uuid4())
        target = self.headers.get("X-Amz-Target", "")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._send(
                400, _error("SerializationException", "Content-Length is missing or too large."), request_id
            )
            return
        body = self.rfile.read(length)
        try:
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            logs = target.startswith(LOGS_TARGET_PREFIX)
            service = LOGS_SIGNING_NAME if logs else SERVICE
            verify(self.command, self.path, headers, body, self.server.identities, service=service)
            if (
                self.command != "POST"
                or urlsplit(self.path).path != "/"
                or not (logs or target.startswith(TARGET_PREFIX))
            ):
                raise ApiError("UnknownOperationException", f"Unknown operation {target or self.command}.")
            try:
                payload = json.loads(body or b"{}")
            except RecursionError:
                raise ApiError("SerializationException", "The request body is nested too deeply.") from None
            except ValueError as e:
                raise ApiError("SerializationException", f"The request body is not valid JSON: {e}") from None
            if not isinstance(payload, dict):
                raise ApiError("SerializationException", "The request body must be a JSON object.")
            if logs:
                result = self.server.logs.call(target[len(LOGS_TARGET_PREFIX) :], payload)
            else:
                if hold(self.server.plane.fault, target[len(TARGET_PREFIX) :]):
                    self.close_connection = True
                    return
                result = self.server.plane.call(target[len(TARGET_PREFIX) :], payload)
            self._send(200, result, request_id)
        except (SignatureError, ApiError, LogsError) as e:
            self._send(e.status, _error(e.code, e.message), request_id)
        except Exception as e:
            log.exception("%s failed", target)
            self._send(500, _error("InternalFailure", f"{type(e).__name__}: {e}"), request_id)

    def _send(self, status: int, data: Mapping[str, Any], request_id: str) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        self.wfile.write(payload)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The operation and the status only: never headers (Authorization) or bodies.
        log.info("%s %s -> %s", self.client_address[0], self.headers.get("X-Amz-Target", "-"), code)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s " + format, self.client_address[0], *args)


def _error(code: str, message: str) -> dict[str, str]:
    return {"__type": code, "message": message}


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def make_server(
    host: str,
    port: int,
    config: RunnerConfig,
    identities: Mapping[str, Identity],
    allow_remote: bool = False,
    fault: FaultMode | None = None,
    slow: SlowSageMaker | None = None,
) -> ApiServer:
    """A bound server, jobs of a previous server recovered; ``serve_forever`` runs it. ``fault`` makes
    it play an unavailable SageMaker (tests of ``run --prefer sagemaker``), ``slow`` a slow one (tests
    of ``benchmark``)."""
    if not identities:
        raise ValueError(
            "the server verifies every request's signature and has no keys to verify it with: give "
            "ACCESS_KEY_ID:SECRET_ACCESS_KEY pairs in --api-keys-file, BATCH_TRANSFORM_API_KEYS_FILE or "
            "BATCH_TRANSFORM_API_KEYS (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"--host {host} is not a loopback address; pass --allow-remote to serve other machines"
        )
    plane = ControlPlane(config, fault, slow)
    if fault is not None:
        log.warning("fault mode %s: this server plays an unavailable SageMaker", fault)
    if slow is not None and slow != SlowSageMaker():
        log.warning("this server plays a slow SageMaker: %s", slow)
    for name in plane.recover():
        log.warning("transform job %s was left running by a previous server: marked Failed", name)
    return ApiServer((host, port), plane, identities, pages_need_keys=not is_loopback(host))


def serve(
    host: str,
    port: int,
    config: RunnerConfig,
    identities: Mapping[str, Identity],
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
    fault: FaultMode | None = None,
    slow: SlowSageMaker | None = None,
) -> None:
    """Serve until SIGINT / SIGTERM; then stop this server's jobs (they end Stopped) and Ray."""
    server = make_server(host, port, config, identities, allow_remote, fault, slow)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if on_ready is not None:
        on_ready(f"http://{host}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.plane.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    # Ray's failure-signal handler (abseil) sees SIGTERM first and arms a 3 s alarm that aborts the
    # process; cancel it, so that jobs are stopped and their uploads aborted before the server exits.
    signal.alarm(0)
    raise KeyboardInterrupt
