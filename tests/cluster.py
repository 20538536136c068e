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

import contextlib
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


# --- Rays started the way users start them: `ray start --head`, then `ray start --address` per node.


@dataclass(frozen=True)
class RayNode:
    """One `ray start` node: its CPUs, and the environment it holds beyond the test's (e.g. the S3 keys
    an instance role would give it)."""

    num_cpus: int
    env: Mapping[str, str] | None = None
    resources: Mapping[str, float] | None = None


@dataclass(frozen=True)
class StartedCluster:
    """A `ray start` cluster: the GCS address (``host:port``), the Jobs API (``http://``) and Ray
    Client (``ray://``) addresses, and the token its nodes require (None: token authentication off)."""

    gcs: str
    dashboard: str | None
    client: str | None
    token: str | None
    ray_tmp: str
    pids: tuple[int, ...]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_env(ray_tmp: str, node: RayNode, token: str | None) -> dict[str, str]:
    env = _ray_env(ray_tmp)
    # The Jobs API runs `batch-transform` on the head: this venv's, as an image would have it on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    else:
        env["RAY_AUTH_MODE"] = "disabled"
    # A Ray job's `batch-transform run` (the Jobs API) keeps its job store here, not in ~.
    env["BATCH_TRANSFORM_HOME"] = str(Path(ray_tmp) / "head-home")
    env.update(node.env or {})
    return env


def _agent_ports() -> list[str]:
    """Ports of a node's own agents: Ray's fixed default for the dashboard agent (52365) would make
    the nodes of one machine race for it, and the loser's agent (the head's: no Jobs API) fail."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
    return [f"--{name}={_free_port()}" for name in (*names, "metrics-export-port")]


def _start_node(args: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).parent / "ray")
    args = [*args, *_agent_ports()]
    with open(log_path, "wb") as log:
        # --block: the node lives exactly as long as this process, which the test stops by pid.
        return subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=ROOT,
            start_new_session=True,
        )


def _wait_started(process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "Ray runtime started" in log_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(
        f"`ray start` of the {what} did not start:\n{log_path.read_text(errors='replace')[-3000:]}"
    )


def _stop_node(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=CLUSTER_STOP_TIMEOUT_S)
    # Whatever of the node is left (raylet, GCS, workers) is in its session: kill it all.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def ray_start_cluster(
    nodes: Sequence[RayNode],
    dashboard: bool = False,
    client: bool = False,
    token: str | None = None,
    autoscaler: Mapping[str, tuple[Mapping[str, float], int]] | None = None,
) -> Iterator[StartedCluster]:
    """``ray start --head`` with ``nodes[0]``, then ``ray start --address`` for each other node,
    stopped by pid when the block ends. ``dashboard``: serve the Jobs API; ``client``: serve Ray
    Client; ``token``: require it (RAY_AUTH_MODE=token), else token authentication is off.
    ``autoscaler``: the head runs Ray's own autoscaler, as the cluster launcher's head does, with these
    worker node types (name -> (resources, max nodes)), on Ray's fake multi-node provider, which
    starts a node as processes on this machine instead of a cloud instance."""
    with _ray_tmpdir() as ray_tmp:
        port = _free_port()
        head_args = ["--head", f"--port={port}", f"--num-cpus={nodes[0].num_cpus}", "--num-gpus=0"]
        head_env: dict[str, str] = {}
        if autoscaler is not None:
            config = Path(ray_tmp) / "autoscaler.json"
            config.write_text(json.dumps(_fake_autoscaler_config(port, nodes[0].num_cpus, autoscaler)))
            head_args.append(f"--autoscaling-config={config}")
            head_env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        dashboard_port = _free_port() if dashboard else None
        client_port = _free_port() if client else None
        head_args += (
            [f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1", "--include-dashboard=true"]
            if dashboard
            else ["--include-dashboard=false"]
        )
        if client_port is not None:
            head_args.append(f"--ray-client-server-port={client_port}")
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for i, node in enumerate(nodes):
                # Each other node gets its own temp dir, as a machine of its own has: nodes sharing one
                # would unpack a Ray job's working_dir into the same folder, each under the other.
                args = (
                    head_args
                    if i == 0
                    else [
                        f"--address=127.0.0.1:{port}",
                        f"--num-cpus={node.num_cpus}",
                        f"--temp-dir={Path(ray_tmp) / f'node-{i}'}",
                    ]
                )
                if node.resources:
                    args.append(f"--resources={json.dumps(dict(node.resources))}")
                log_path = Path(ray_tmp) / f"node-{i}.log"
                env = {**_node_env(ray_tmp, node, token), **(head_env if i == 0 else {})}
                processes.append(_start_node(args, env, log_path))
                _wait_started(processes[-1], log_path, "head" if i == 0 else f"node {i}")
            started = StartedCluster(
                gcs=f"127.0.0.1:{port}",
                dashboard=f"http://127.0.0.1:{dashboard_port}" if dashboard_port else None,
                client=f"ray://127.0.0.1:{client_port}" if client_port else None,
                token=token,
                ray_tmp=ray_tmp,
                pids=tuple(p.pid for p in processes),
            )
            if started.dashboard is not None:
                _wait_jobs_api(started)
            yield started
        finally:
            for process in reversed(processes):
                _stop_node(process)
            if autoscaler is not None:
                _kill_started_under(ray_tmp)


def _fake_autoscaler_config(
    port: int, head_cpus: int, node_types: Mapping[str, tuple[Mapping[str, float], int]]
) -> dict[str, Any]:
    """A cluster launcher config for Ray's fake multi-node provider: a head of ``head_cpus`` and
    ``node_types`` starting at zero nodes."""
    types: dict[str, Any] = {
        "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}
    }
    for name, (resources, most) in node_types.items():
        types[name] = {"resources": dict(resources), "node_config": {}, "min_workers": 0, "max_workers": most}
    empty: dict[str, Any] = {key: [] for key in _LAUNCHER_LISTS}
    return {
        "cluster_name": "fake",
        "max_workers": sum(most for _, most in node_types.values()),
        "provider": {
            "type": "fake_multinode",
            "gcs_address": f"127.0.0.1:{port}",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "docker": {},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        "auth": {"ssh_user": "ubuntu"},
        **empty,
    }


_LAUNCHER_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
    "cluster_synced_files",
    "rsync_exclude",
    "rsync_filter",
)


def _kill_started_under(ray_tmp: str) -> None:
    """Kill, by pid, what is left running from ``ray_tmp``: the fake provider's nodes are started by
    the head's autoscaler in sessions of their own and outlive the head."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(ray_tmp in part for part in p.info["cmdline"] or ()):
                p.kill()


@contextmanager
def join_node(cluster: StartedCluster, node: RayNode, name: str) -> Iterator[int]:
    """``ray start --address`` one more node into ``cluster`` (as an autoscaler or an operator adds
    one), for the duration of the block; yields its `ray start` pid."""
    temp_dir = Path(cluster.ray_tmp) / name
    args = [f"--address={cluster.gcs}", f"--num-cpus={node.num_cpus}", f"--temp-dir={temp_dir}"]
    log_path = Path(cluster.ray_tmp) / f"{name}.log"
    process = _start_node(args, _node_env(cluster.ray_tmp, node, cluster.token), log_path)
    try:
        _wait_started(process, log_path, name)
        yield process.pid
    finally:
        _stop_node(process)


JOBS_API_READY_S = 120.0


def _wait_jobs_api(cluster: StartedCluster) -> None:
    """Until a Ray job runs: the head's job agent starts some seconds after `ray start` says the node
    is up, and before it does the Jobs API answers "No available agent to submit job"."""
    assert cluster.dashboard is not None
    ray = str(Path(sys.executable).parent / "ray")
    env = driver_env(cluster, RAY_AUTH_MODE="token" if cluster.token else "disabled")
    deadline = time.monotonic() + JOBS_API_READY_S
    while True:
        done = subprocess.run(
            [ray, "job", "submit", "--address", cluster.dashboard, "--", "true"],
            env=env, capture_output=True, text=True, timeout=JOBS_API_READY_S, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the Jobs API at {cluster.dashboard} never ran a job:\n{done.stdout}{done.stderr}"
            )
        time.sleep(1.0)


def driver_env(cluster: StartedCluster, drop: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """A driver's environment for ``cluster``: the test's, with the cluster's token (as RAY_AUTH_TOKEN
    alone: the runner turns token mode on itself), without ``drop``, plus ``extra``."""
    env = _ray_env(cluster.ray_tmp)
    env.pop("RAY_AUTH_MODE", None)
    if cluster.token is not None:
        env["RAY_AUTH_TOKEN"] = cluster.token
    for name in drop:
        env.pop(name, None)
    env.update(extra)
    return env


def run_cli_with(
    request: Mapping[str, Any],
    model: Mapping[str, Any],
    tmp: Path,
    home: Path,
    env: Mapping[str, str],
    *flags: str,
    timeout_s: float = JOB_TIMEOUT_S,
) -> CliRun:
    """``batch-transform --home HOME run JOB --model MODEL *flags`` with exactly ``env``."""
    command = [
        sys.executable,
        "-m",
        "runner.cli",
        "--home",
        str(home),
        *_write_requests(request, model, tmp),
        *flags,
    ]
    return _run(command, env, timeout_s)
