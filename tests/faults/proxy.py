"""A fault-injecting HTTP proxy in front of the real SeaweedFS S3 server, on 127.0.0.1.

Per request, chosen by a seeded RNG: answer 503 SlowDown or 500 InternalError without forwarding,
reset the connection, delay, or forward and cut the response body short. Everything else is
forwarded unchanged (Host included, so SigV4 signatures stay valid). Counts what it injected.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
INTERNAL = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"


@dataclass
class Faults:
    """Shares of requests that get each fault (checked in this order)."""

    slow_down: float = 0.0
    internal_error: float = 0.0
    reset: float = 0.0
    cut_body: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.2
    seed: int = 0
    # Only GETs of object bodies are cut (a cut listing or upload answer is a different fault).
    cut_min_bytes: int = 1024


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _error(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                # SO_LINGER 0: close with RST, as a dropped connection looks to the client.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._pick()
                if fault == "slow_down":
                    return self._error(503, SLOW_DOWN)
                if fault == "internal_error":
                    return self._error(500, INTERNAL)
                if fault == "reset":
                    return self._reset()
                if fault == "delay":
                    time.sleep(proxy.faults.delay_s)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                cut = (
                    fault == "cut_body" and self.command == "GET" and len(data) >= proxy.faults.cut_min_bytes
                )
                if fault == "cut_body" and not cut:
                    proxy._uncount("cut_body")
                self.send_response(resp.status, resp.reason)
                head = self.command == "HEAD"  # its Content-Length is the object's, with no body sent
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP and (head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    return self._reset()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _pick(self) -> str:
        f = self.faults
        with self._lock:
            self.requests += 1
            r = self._rng.random()
            for name, share in (
                ("slow_down", f.slow_down),
                ("internal_error", f.internal_error),
                ("reset", f.reset),
                ("cut_body", f.cut_body),
                ("delay", f.delay),
            ):
                if r < share:
                    self.injected[name] += 1
                    return name
                r -= share
        return ""

    def _uncount(self, name: str) -> None:
        with self._lock:
            self.injected[name] -= 1

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
