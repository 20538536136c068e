"""Which runtime runs a model in a worker (in-process hooks or a serving container), and the settings
that runtime gets: the engine's knobs plus the job's ModelClientConfig."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.config import CONTAINER_STARTUP_TIMEOUT_S, FrameworkVersions, ModelRuntime, choice_of
from runner.model.artifacts import ModelSpec

# Image repositories whose containers run the toolkit's hooks, beyond the families handler.py knows.
FRAMEWORK_IMAGE_MARKERS = ("huggingface", "mxnet-inference")


@dataclass(frozen=True)
class RuntimeSettings:
    """How a worker runs the model: ``RunnerConfig`` knobs plus the job's ModelClientConfig."""

    model_runtime: ModelRuntime = ModelRuntime.AUTO  # choose_runtime below decides AUTO
    serve_command: str | None = None
    startup_timeout_s: float = CONTAINER_STARTUP_TIMEOUT_S
    invocations_timeout_s: float = 600.0
    invocations_max_retries: int = 3
    chunked: bool = False  # resolved MaxPayloadInMB == 0
    log_dir: str | None = None
    cwd: str | None = None  # where the job was started; relative serve_command paths resolve here
    install_requirements: bool = True  # pip-install <model_dir>/code/requirements.txt once per node
    framework_versions: FrameworkVersions = FrameworkVersions.CHECK  # runner/model/frameworks.py
    record_delay_s: float = 0.0  # RunnerConfig.record_delay_s: a slow SageMaker, played in tests


def choose_runtime(
    model: ModelSpec,
    model_dir: Path,
    setting: ModelRuntime | str = ModelRuntime.AUTO,
    environ: Mapping[str, str] | None = None,
) -> tuple[ModelRuntime, str]:
    """``("hooks" | "container", why)``: in-process hooks for models with ``code/<SAGEMAKER_PROGRAM>``
    (default ``inference.py``) and for framework images; a serving container for any other Image.
    ``setting`` (RunnerConfig.model_runtime) other than ``auto`` decides alone."""
    chosen = ModelRuntime(choice_of(ModelRuntime, "model_runtime", setting))
    if chosen is not ModelRuntime.AUTO:
        return chosen, f"model_runtime={chosen}"
    env = {**model.environment, **(environ or {})}
    program = env.get("SAGEMAKER_PROGRAM") or "inference.py"
    stem = program.removesuffix(".py")
    code = model_dir / "code"
    if (code / f"{stem}.py").is_file() or (code / stem / "__init__.py").is_file():
        return ModelRuntime.HOOKS, f"the model folder has code/{stem}.py"
    from runner.model.handler import family_for_image  # numpy/pyarrow: only where a worker needs them

    family = family_for_image(model.image)
    repository = (model.image or "").rsplit("/", 1)[-1].lower()
    if family.name != "base" or any(m in repository for m in FRAMEWORK_IMAGE_MARKERS):
        return ModelRuntime.HOOKS, f"{model.image} is a framework image (toolkit family {family.name})"
    return (
        ModelRuntime.CONTAINER,
        f"Image {model.image} is not a framework image and the model has no code/{stem}.py",
    )
