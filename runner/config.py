"""Engine knobs (never part of the AWS request) and where the runner keeps its files.

The environment is read here, once, at the edge; everything else receives a ``RunnerConfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "BATCH_TRANSFORM_HOME"
WORKER_READY_TIMEOUT_S = 600
DEFAULT_IN_FLIGHT_PER_WORKER = 2
DEFAULT_OBJECTS_IN_FLIGHT_PER_INSTANCE = 4


def data_home(environ: dict[str, str] | None = None) -> Path:
    """Where the job store, embedded S3 data and model cache live.

    ``$BATCH_TRANSFORM_HOME``, else ``$XDG_DATA_HOME/batch-transform``, else
    ``~/.local/share/batch-transform``.
    """
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "batch-transform"


@dataclass(frozen=True)
class RunnerConfig:
    """How the engine runs a job. Defaults give SageMaker's behaviour on a local Ray."""

    ray_address: str | None = None
    home: Path | None = None
    # Workers (Ray actors) per instance; None = the resolved MaxConcurrentTransforms.
    workers_per_instance: int | None = None
    # Payloads queued per worker beyond the one it runs, so a worker never waits on the feeder.
    in_flight_per_worker: int = DEFAULT_IN_FLIGHT_PER_WORKER
    # Input objects fed at once on one instance (many small objects keep the workers busy).
    objects_in_flight_per_instance: int = DEFAULT_OBJECTS_IN_FLIGHT_PER_INSTANCE
    worker_ready_timeout_s: float = WORKER_READY_TIMEOUT_S
    install_requirements: bool = True
    progress: bool = True

    @property
    def data_dir(self) -> Path:
        return self.home if self.home is not None else data_home()

    @property
    def store_path(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"
