"""``batch-transform ray up | down``: one Ray kept running on this machine, so that each ``run``
joins it (Ray's own rule for ``ray.init()`` without an address) instead of starting a Ray of its own
(seconds per job).

It is ``ray start --head --block`` in a process of its own, recorded (pid, address) in the runner's
home; ``down`` stops that process only, never other Rays of the machine (``ray stop`` would stop
them all). The node advertises the MACHINE_RESOURCE custom resource: a job that joins it keeps the
rules of a Ray it started itself (instances scaled down to fit this machine, the driver's AWS
settings passed to the tasks), since it is this machine and its user.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MACHINE_RESOURCE = "batch_transform_machine"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class MachineRay:
    pid: int
    address: str
    log: str


def _record_path(home: Path) -> Path:
    return home / "ray-up.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(home: Path) -> MachineRay | None:
    """The Ray ``ray up`` started from this home, if its process is still there."""
    path = _record_path(home)
    try:
        record = MachineRay(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if _alive(record.pid) else None


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"  # the `ray` of this environment, as installed with it
    return str(beside) if beside.exists() else "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_up(home: Path, num_cpus: int | None = None, num_gpus: int | None = None) -> tuple[MachineRay, bool]:
    """Start this machine's Ray unless it runs already; returns it and whether it was started now.
    Raises RuntimeError, with the end of Ray's log, if it does not start."""
    current = running(home)
    if current is not None:
        return current, False
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = home / "ray-up.log"
    args = [
        _ray_executable(),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--resources={json.dumps({MACHINE_RESOURCE: 1})}",
    ]
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "Ray runtime started" in log_path.read_text(errors="replace"):
            record = MachineRay(process.pid, f"127.0.0.1:{port}", str(log_path))
            _record_path(home).write_text(json.dumps(asdict(record)))
            return record, True
        if process.poll() is not None:
            break
        time.sleep(0.2)
    _stop(process.pid)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(
        f"`ray start` did not start within {START_TIMEOUT_S:g}s; its log ({log_path}) ends:\n{tail}"
    )


def ray_down(home: Path) -> MachineRay | None:
    """Stop the Ray ``ray up`` started from this home; returns it, or None if none was running."""
    current = running(home)
    if current is not None:
        _stop(current.pid)
        _forget_address(current.address)
    _record_path(home).unlink(missing_ok=True)
    return current


def _forget_address(address: str) -> None:
    """Remove Ray's "current cluster" file if it still names the stopped Ray (`ray stop` does the
    same): a later ``ray.init()`` would otherwise try to join it and hang."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # older Rays keep it here
        from ray._private.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    try:
        named = path.read_text().strip()
    except OSError:
        return
    if named.rsplit(":", 1)[-1] == address.rsplit(":", 1)[-1]:
        path.unlink(missing_ok=True)


def _stop(pid: int) -> None:
    # `ray start --block` stops its node's processes on SIGTERM; whatever is left of its session
    # (it leads its own process group) is killed after the grace.
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):  # reaped here when it is this process's child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
