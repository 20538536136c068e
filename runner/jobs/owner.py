"""Which process runs a job: its owner id (host, pid, the pid's start time), kept in the job store
(``JobStore.claim_job``), so that `resume` and a restarted server can tell a job whose process died
(kill -9) from one still running."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def owner_id(pid: int | None = None) -> str:
    """A process: host, pid and the pid's start time (so a reused pid is not taken for it)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_started(pid)}"


def _started(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, after the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_alive(owner: str) -> bool:
    """False only when the owner provably is gone (same host, pid dead or reused)."""
    host, pid, started = [*owner.split(":"), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's process: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or _started(int(pid)) == started
