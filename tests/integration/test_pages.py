"""``serve``'s pages over real HTTP: open on a loopback server, behind the API keys (HTTP Basic) on a
server that other machines may reach. The server runs in this process on 127.0.0.1 and is told it
serves beyond loopback, so that no other address is ever bound or reached."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.config import RunnerConfig
from runner.server.api import ControlPlane
from runner.server.http import ApiServer
from runner.server.sigv4 import Identity

pytestmark = pytest.mark.integration

KEYS = {"AKIDPAGES": Identity("AKIDPAGES", "pages-secret")}


def start(tmp_path: Path, need_keys: bool) -> tuple[ApiServer, str]:
    plane = ControlPlane(RunnerConfig(home=tmp_path / ("remote" if need_keys else "local")))
    server = ApiServer(("127.0.0.1", 0), plane, KEYS, pages_need_keys=need_keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    started = {name: start(tmp_path, need) for name, need in (("loopback", False), ("remote", True))}
    yield {name: url for name, (_, url) in started.items()}
    for server, _ in started.values():
        server.shutdown()
        server.server_close()


def get(url: str, user: str | None = None, secret: str = "") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_pages_on_loopback_are_open(servers: dict[str, str]) -> None:
    status, body, headers = get(servers["loopback"] + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<h1>Transform jobs</h1>" in body and "0 job(s)" in body
    status, body, _ = get(servers["loopback"] + "/jobs/no-such-job")
    assert (status, body) == (404, "no transform job named 'no-such-job'\n")


@pytest.mark.parametrize(
    ("user", "secret"), [(None, ""), ("AKIDPAGES", "wrong"), ("AKIDOTHER", "pages-secret"), ("", "")]
)
def test_pages_beyond_loopback_need_an_api_key(
    servers: dict[str, str], user: str | None, secret: str
) -> None:
    status, body, headers = get(servers["remote"] + "/", user, secret)
    assert status == 401 and "Transform jobs" not in body
    assert headers["WWW-Authenticate"].startswith('Basic realm="batch-transform"')
    status, body, _ = get(servers["remote"] + "/", "AKIDPAGES", "pages-secret")
    assert status == 200 and "<h1>Transform jobs</h1>" in body
