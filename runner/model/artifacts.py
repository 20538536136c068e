"""The model a job runs: the CreateModel request, its artifacts on local disk, and its environment.

Artifacts (ModelDataUrl: an ``s3://`` tarball or prefix, or a local folder / tarball) are fetched and
extracted once per node into a cache keyed by URL and ETag; concurrent workers on one node wait on
a file lock instead of extracting twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.contract.spec import TransformJobSpec, validate_request
from runner.errors import ModelError, Problem, RunnerError, SpecError
from runner.storage import ObjectInfo, storage_for

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
GZIP_MAGIC = b"\x1f\x8b"
# Framework images whose toolkit runs hooks, beyond the families handler.py ports.


@dataclass(frozen=True)
class ModelSpec:
    """A CreateModel request, reduced to what a job needs."""

    name: str
    image: str | None
    model_data_url: str | None
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    request: Mapping[str, Any] = field(default_factory=dict)
    # The remote artifacts' cache key as the driver read it (``artifact_key``); None: not read.
    artifact_key: str | None = None


def parse_create_model(request: Mapping[str, Any]) -> ModelSpec:
    """Validate against botocore's CreateModel shape plus the rules Batch Transform adds."""
    problems = [p for p in validate_request("CreateModel", request) if not _local_artifact_problem(p)]
    if not isinstance(request, Mapping):
        raise SpecError(problems)
    # A member of the wrong type is already a problem; the rules below only read well-typed ones.
    listed = request.get("Containers")
    containers = [c for c in listed if isinstance(c, Mapping)] if isinstance(listed, list) else []
    primary = request.get("PrimaryContainer")
    primary = primary if isinstance(primary, Mapping) else None
    if primary is None and not containers and not problems:
        problems.append(Problem("primaryContainer", None, "Member must not be null (or give Containers)"))
    if len(containers) > 1:
        problems.append(
            Problem(
                "containers",
                f"{len(containers)} containers",
                "at most 1 container is supported by this runner",
            )
        )
    container: Mapping[str, Any] = primary or (containers[0] if containers else {})
    if "ModelDataSource" in container:
        problems.append(
            Problem(
                "primaryContainer.modelDataSource",
                "…",
                "SageMaker Batch currently doesn't support Model entity with container definitions which use "
                "ModelDataSource attribute",
            )
        )
    if container.get("Mode", "SingleModel") != "SingleModel":
        problems.append(
            Problem("primaryContainer.mode", container.get("Mode"), "only SingleModel is supported")
        )
    if problems:
        raise SpecError(problems)
    return ModelSpec(
        name=str(request["ModelName"]),
        image=container.get("Image"),
        model_data_url=container.get("ModelDataUrl"),
        environment=MappingProxyType(dict(container.get("Environment") or {})),
        request=dict(request),
    )


def _local_artifact_problem(problem: Problem) -> bool:
    """A local folder / tarball / file:// ModelDataUrl is the runner's extension for the embedded mode;
    the pattern (``s3://`` or ``https://``) applies to everything else."""
    return (
        problem.path.endswith(".modelDataUrl")
        and "regular expression" in problem.constraint
        and isinstance(problem.value, str)
        and _scheme(problem.value) == "file"
    )


def job_environment(model: ModelSpec, job: TransformJobSpec) -> dict[str, str]:
    """Variables the model sees: model Environment, then platform variables, then job Environment.

    Platform variables other than SAGEMAKER_BATCH are set only where the request set the field
    (CODE: "If the user doesn't set values for them, they aren't passed").
    """
    env = dict(model.environment)
    env["SAGEMAKER_BATCH"] = "true"
    if job.max_payload_mb is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job.max_payload_mb)
    if job.batch_strategy is not None:
        env["SAGEMAKER_BATCH_STRATEGY"] = (
            "SINGLE_RECORD" if job.batch_strategy == "SingleRecord" else "MULTI_RECORD"
        )
    if job.max_concurrent_transforms is not None:
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job.max_concurrent_transforms)
    env.update(job.environment)
    return env


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def local_model_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()


def ensure_model_dir(url: str | None, cache_dir: Path, key: str | None = None) -> Path:
    """A local folder holding the model's artifacts (SageMaker's /opt/ml/model). ``key``: the
    remote artifacts' ``artifact_key`` as the driver read it; when this node has them cached under
    it, no S3 call is made (a worker then never builds an S3 client)."""
    if not url:
        empty = cache_dir / "empty-model"
        empty.mkdir(parents=True, exist_ok=True)
        return empty
    try:
        if _scheme(url) == "file":
            path = local_model_path(url)
            if path.is_dir():
                return path
            if not path.is_file():
                raise ModelError(f"ModelDataUrl {url}: no such file or folder")
            stat = path.stat()
            return _cached(
                cache_dir,
                f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}",
                lambda d: _extract(path, d, url),
            )
        # A key read elsewhere (the driver) is checked against the artifacts before they are fetched.
        verify, key = key is not None, key or _remote_key(url)
        return _cached(cache_dir, key, lambda d: _fetch_remote(url, key, d, cache_dir, verify))
    except RunnerError as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"ModelDataUrl {url}: {e}") from e


def artifact_key(url: str | None) -> str | None:
    """The cache key of a remote ModelDataUrl as it is now: its URL and ETag(s). None for local
    artifacts, and where it cannot be read (the workers then report why, as they fetch)."""
    if not url or _scheme(url) == "file":
        return None
    try:
        return _remote_key(url)
    except RunnerError:
        return None


def prefetch_model(model: ModelSpec, cache_dir: Path) -> None:
    """Fill this node's cache with the model's remote artifacts in a thread, while its workers
    start: they wait on the cache's lock instead of each building an S3 client. A failure is left
    for the workers to report, as they would have without this."""
    if model.artifact_key is None:
        return

    def fill() -> None:
        with contextlib.suppress(Exception):
            ensure_model_dir(model.model_data_url, cache_dir, model.artifact_key)

    threading.Thread(target=fill, name="model-prefetch", daemon=True).start()


def _remote_key(url: str) -> str:
    storage = storage_for(url)
    if url.endswith(TARBALL_SUFFIXES):
        return f"{url}|{storage.head(url).etag}"
    return _prefix_key(url, list(storage.list_objects(url)))


def _prefix_key(url: str, objects: list[ObjectInfo]) -> str:
    if not objects:
        raise ModelError(f"ModelDataUrl {url}: no object or prefix with that name")
    return url + "|" + ",".join(sorted(o.etag for o in objects))


def _fetch_remote(url: str, key: str, target: Path, cache_dir: Path, verify: bool) -> None:
    """Download the artifacts into ``target``; with ``verify``, once they are checked to be those
    ``key`` names."""
    changed = ModelError(
        f"ModelDataUrl {url}: the artifacts changed while the job was starting; run it again"
    )
    storage = storage_for(url)
    if url.endswith(TARBALL_SUFFIXES):
        if verify and f"{url}|{storage.head(url).etag}" != key:
            raise changed
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".tar.gz") as tmp:
            for chunk in storage.iter_chunks(url):
                tmp.write(chunk)
            tmp.flush()
            _extract(Path(tmp.name), target, url)
        return
    objects = list(storage.list_objects(url))
    if verify and _prefix_key(url, objects) != key:
        raise changed
    base = url.rstrip("/") + "/"
    for obj in objects:
        rel = obj.uri[len(base) :] if obj.uri.startswith(base) else obj.uri.rsplit("/", 1)[-1]
        dest = (target / rel).resolve()
        if not dest.is_relative_to(target.resolve()):
            raise ModelError(f"ModelDataUrl {url}: object {obj.uri} would land outside the model folder")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as f:
                for chunk in storage.iter_chunks(obj.uri):
                    f.write(chunk)
        except OSError as e:
            # S3 lets "a" and "a/b" both be keys; a folder cannot be a file too.
            raise ModelError(
                f"ModelDataUrl {url}: object {obj.uri} cannot be stored as {rel!r} in the model folder: "
                f"{e.strerror or e} (is one key also the folder of another?)"
            ) from e


REQUIREMENTS = Path("code") / "requirements.txt"
PIP_ERROR_LINES = 15


def install_requirements(model_dir: Path, cache_dir: Path) -> Path | None:
    """Install ``code/requirements.txt`` (as the inference toolkit does at start) into a folder kept
    per node and keyed by the file's content, so each node installs a given list once; returns the
    folder to put on sys.path, or None when the model has no requirements file."""
    requirements = model_dir / REQUIREMENTS
    if not requirements.is_file():
        return None
    text = requirements.read_text()

    def fill(target: Path) -> None:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
        ]
        done = subprocess.run(
            [*argv, "--target", str(target), "-r", str(requirements)],
            cwd=requirements.parent,  # relative paths in the file are relative to it, as for pip -r
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-PIP_ERROR_LINES:])
            raise ModelError(f"{requirements}: pip could not install the model's requirements:\n{tail}")

    return _cached(cache_dir / "requirements", text, fill)


def _cached(cache_dir: Path, key: str, fill: Any) -> Path:
    """Run ``fill(folder)`` once per node for ``key``; later callers get the finished folder."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    final = cache_dir / digest
    with open(cache_dir / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f"{digest}.tmp-"))
        try:
            fill(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _unsafe(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be extracted: it would land outside the model folder, or is a link."""
    parts = Path(member.name).parts
    if member.name.startswith("/") or ".." in parts:
        return "its path leaves the model folder"
    if member.issym() or member.islnk():
        return "links are not allowed in model archives"
    if not (member.isfile() or member.isdir()):
        return "only files and folders are allowed in model archives"
    return None


def _not_a_tarball(tarball: Path) -> str:
    """Why ``tarfile.open`` refused the file, in one line (its own text lists a failure per method)."""
    with open(tarball, "rb") as f:
        head = f.read(len(GZIP_MAGIC))
    if not head:
        return "the file is empty; a model archive is a tar.gz of the model folder"
    if head == GZIP_MAGIC:
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            return f"the file starts like gzip but is not a valid tar.gz: {e}"
    return (
        "the file is not a tar archive (plain, or compressed with gzip, bzip2 or xz); a model archive is a "
        "tar.gz of the model folder"
    )


def _extract(tarball: Path, target: Path, url: str) -> None:
    where = f"ModelDataUrl {url}: cannot extract the model archive"
    try:
        with _open_tarball(tarball, where) as tar:
            for member in tar.getmembers():
                reason = _unsafe(member)
                if reason:
                    raise ModelError(f"{where}: member {member.name!r}: {reason}")
            tar.extractall(target, filter="data")  # belt and braces: the stdlib's own safety filter
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelError(f"{where}: {_read_error(e)}") from e


def _open_tarball(tarball: Path, where: str) -> tarfile.TarFile:
    try:
        return tarfile.open(tarball)
    except tarfile.ReadError as e:
        raise ModelError(f"{where}: {_not_a_tarball(tarball)}") from e
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelError(f"{where}: {_read_error(e)}") from e


def _read_error(e: BaseException) -> str:
    # gzip's EOFError ("Compressed file ended before ...") does not say that the file is cut short.
    return f"the file is truncated ({e})" if isinstance(e, EOFError) else str(e)
