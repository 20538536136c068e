"""Real Rays for the tests and benchmarks that must not share the test session's own Ray.

``ray_cluster``: a multi-node ``ray.cluster_utils.Cluster`` (several raylets on this machine) held
by a helper process until the block ends. ``run_cli`` runs ``batch-transform run`` against it with
``--ray-address``, as a user would against a real cluster.

``run_cli_on_local_ray``: ``batch-transform run`` in a process whose own local Ray has exactly
``num_cpus`` CPUs, as the runner's local Ray has on a machine with that many cores.

Each Ray gets its own short RAY_TMPDIR: its files, and its "current cluster" address file, stay out
of /tmp/ray, where other local Rays look for a cluster to join.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_START_TIMEOUT_S = 180.0
CLUSTER_STOP_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 300.0

# Runs in its own process: start the nodes given as JSON in argv[1] (the first is the head), print
# the address and the node ids, hold the cluster until stdin closes.
CLUSTER_HOLDER = """
import json, sys
from ray.cluster_utils import Cluster

nodes = json.loads(sys.argv[1])
head = dict(nodes[0], include_dashboard=False)
cluster = Cluster(initialize_head=True, head_node_args=head)
others = [cluster.add_node(**node) for node in nodes[1:]]
cluster.wait_for_nodes()
ids = [cluster.head_node.node_id] + [node.node_id for node in others]
print(json.dumps({"address": cluster.address, "node_ids": ids}), flush=True)
sys.stdin.read()
cluster.shutdown()
"""

# Runs the CLI in a process whose local Ray has argv[1] CPUs. The runner's ensure_ray keeps a Ray
# that is already up, so the job sees this machine-sized Ray and sizes its instances to it. An
# argument "{address}" becomes this Ray's address, for runs that go the --ray-address way.
LOCAL_RAY_CLI = """
import logging, sys
import ray
from runner.cli.main import main

ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, logging_level=logging.WARNING)
address = ray.get_runtime_context().gcs_address
code = main([address if a == "{address}" else a for a in sys.argv[2:]])
ray.shutdown()
sys.exit(code)
"""


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    node_ids: tuple[str, ...]  # the head's first, then the added nodes' in the order given
    ray_tmp: str


def _ray_env(ray_tmp: str) -> dict[str, str]:
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)  # a Ray of the developer's must not be joined instead
    return env


@contextmanager
def _ray_tmpdir() -> Iterator[str]:
    # A short path: Ray's socket paths under it must stay below the 107-byte limit.
    with tempfile.TemporaryDirectory(prefix="rt-", dir="/tmp", ignore_cleanup_errors=True) as path:
        yield path


@contextmanager
def ray_cluster(nodes: Sequence[Mapping[str, Any]]) -> Iterator[ClusterInfo]:
    """A Ray cluster of ``nodes`` (``ray.cluster_utils.Cluster.add_node`` arguments, e.g.
    ``{"num_cpus": 2}``; the first is the head), up for the duration of the block."""
    with _ray_tmpdir() as ray_tmp:
        log_path = Path(ray_tmp) / "holder.log"
        with open(log_path, "w") as log:
            holder = subprocess.Popen(
                [sys.executable, "-c", CLUSTER_HOLDER, json.dumps(list(nodes))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_ray_env(ray_tmp),
                cwd=ROOT,
            )
        try:
            line = _read_line(holder, CLUSTER_START_TIMEOUT_S)
            if not line:
                tail = log_path.read_text()[-3000:]
                raise AssertionError(
                    f"the {len(nodes)}-node Ray cluster did not start within {CLUSTER_START_TIMEOUT_S:g}s "
                    f"(holder exit status {holder.poll()}); its stderr ends with:\n{tail}"
                )
            info = json.loads(line)
            yield ClusterInfo(info["address"], tuple(info["node_ids"]), ray_tmp)
        finally:
            _stop(holder)


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The process's first line of stdout, or "" if it exits or stays silent for ``timeout_s``."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return ""
    return process.stdout.readline()


def _stop(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()  # the holder shuts its cluster down
    try:
        holder.wait(timeout=CLUSTER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait()


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _write_requests(request: Mapping[str, Any], model: Mapping[str, Any], tmp: Path) -> list[str]:
    """The request files, and the `run` arguments that name them."""
    tmp.mkdir(parents=True, exist_ok=True)
    name = request["TransformJobName"]
    job_file, model_file = tmp / f"{name}.job.json", tmp / f"{name}.model.json"
    job_file.write_text(json.dumps(request))
    model_file.write_text(json.dumps(model))
    return ["run", str(job_file), "--model", str(model_file), "--no-progress"]


def _run(command: list[str], env: Mapping[str, str], timeout_s: float) -> CliRun:
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:  # a hung job: fail with what it printed so far
        printed = b"".join(x if isinstance(x, bytes) else x.encode() for x in (e.stdout, e.stderr) if x)
        raise AssertionError(
            f"`batch-transform run` did not finish within {timeout_s:g}s (a deadlock?); it printed:\n"
            + printed.decode(errors="replace")[-3000:]
        ) from None
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - t0)


def run_cli(
    request: Mapping[str, Any],
    model: Mapping[str, Any],
    tmp: Path,
    home: Path,
    cluster: ClusterInfo,
    timeout_s: float = JOB_TIMEOUT_S,
    via_environment: bool = False,
) -> CliRun:
    """``batch-transform --home HOME run JOB --model MODEL --ray-address ADDRESS`` on ``cluster``; with
    ``via_environment`` the address is given as RAY_ADDRESS instead, as ``ray job submit`` and a KubeRay
    RayJob give it to the driver."""
    command = [sys.executable, "-m", "runner.cli", "--home", str(home), *_write_requests(request, model, tmp)]
    env = _ray_env(cluster.ray_tmp)
    if via_environment:
        env["RAY_ADDRESS"] = cluster.address
    else:
        command += ["--ray-address", cluster.address]
    return _run(command, env, timeout_s)


def run_cli_on_local_ray(
    request: Mapping[str, Any],
    model: Mapping[str, Any],
    tmp: Path,
    home: Path,
    num_cpus: int,
    ray_address_flag: bool = False,
    timeout_s: float = JOB_TIMEOUT_S,
) -> CliRun:
    """``batch-transform run`` with a local Ray of ``num_cpus`` CPUs; with ``ray_address_flag`` the
    job is told that Ray's address (``--ray-address``), so it treats it as an existing cluster."""
    args = ["--home", str(home), *_write_requests(request, model, tmp)]
    if ray_address_flag:
        args += ["--ray-address", "{address}"]
    with _ray_tmpdir() as ray_tmp:
        return _run([sys.executable, "-c", LOCAL_RAY_CLI, str(num_cpus), *args], _ray_env(ray_tmp), timeout_s)
