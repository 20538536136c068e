"""Which framework versions a SageMaker image holds, read from its tag, against the ones installed here.

A model saved by one major version of a framework may not load, or may predict differently, in
another: xgboost 3.1 refuses the binary ``xgboost-model`` an XGBoost 1.7 training job writes, and
xgboost 2 reads 1.7's ``base_score`` differently. The image tag names the version SageMaker would
load the model with (``sagemaker-xgboost:1.7-1`` is xgboost 1.7, ``sagemaker-scikit-learn:1.2-1``
scikit-learn 1.2, ``pytorch-inference:2.1.0-cpu-py310`` torch 2.1.0,
``huggingface-pytorch-inference:2.1.0-transformers4.37.0-…`` torch 2.1.0 and transformers 4.37.0).
The in-process runtime checks the workers' versions before the script is imported: a different major
version is refused (unless the job says to go on, which it then notes), another minor or patch
version is noted, and a framework that is not installed is noted (the script may not need it).
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass

from runner.config import FrameworkVersions
from runner.errors import WorkerStartupError

# Image repository marker -> the distributions its tag's leading version names.
TAG_FRAMEWORKS = (
    ("sagemaker-scikit-learn", "scikit-learn"),
    ("sagemaker-xgboost", "xgboost"),
    ("mxnet-inference", "mxnet"),
    ("pytorch-inference", "torch"),  # also huggingface-pytorch-inference
)
_LEADING_VERSION = re.compile(r"^(\d+(?:\.\d+){1,2})(?=$|[-_])")
_TRANSFORMERS = re.compile(r"(?:^|-)transformers(\d+(?:\.\d+){1,2})(?=$|-)")


@dataclass(frozen=True)
class FrameworkPin:
    """A framework the image holds: its distribution name and the version its tag names."""

    distribution: str
    version: str


@dataclass(frozen=True)
class FrameworkCheck:
    """One framework of the image against this environment (``installed`` None: not installed)."""

    pin: FrameworkPin
    installed: str | None

    @property
    def same_major(self) -> bool:
        return self.installed is not None and _major(self.installed) == _major(self.pin.version)

    @property
    def matches(self) -> bool:
        """The installed version is the tag's (``1.7`` matches ``1.7.6``)."""
        if self.installed is None:
            return False
        have = _numbers(self.installed)
        want = _numbers(self.pin.version)
        return have[: len(want)] == want

    def describe(self) -> str:
        """``xgboost 1.7.6 (the image's 1.7)``, as Describe and the notes show it."""
        have = self.installed or "not installed"
        return f"{self.pin.distribution} {have} (the image's {self.pin.version})"


def image_frameworks(image: str | None) -> tuple[FrameworkPin, ...]:
    """The frameworks, with versions, that a SageMaker framework image's tag names; () for an image
    without a version tag (``latest``, a digest) or one that is not a framework image."""
    if not image:
        return ()
    name = image.rsplit("/", 1)[-1].split("@", 1)[0]
    if ":" not in name:
        return ()
    repository, tag = name.lower().split(":", 1)
    pins: list[FrameworkPin] = []
    for marker, distribution in TAG_FRAMEWORKS:
        if marker in repository:
            leading = _LEADING_VERSION.match(tag)
            if leading:
                pins.append(FrameworkPin(distribution, leading.group(1)))
            break
    if "huggingface" in repository:
        transformers = _TRANSFORMERS.search(tag)
        if transformers:
            pins.append(FrameworkPin("transformers", transformers.group(1)))
    return tuple(pins)


def check_frameworks(
    image: str | None, setting: FrameworkVersions | str = FrameworkVersions.CHECK
) -> tuple[FrameworkCheck, ...]:
    """Each framework of the image against what this process would import; a different major
    version raises WorkerStartupError (``setting`` check) naming both and what to do."""
    checks = tuple(FrameworkCheck(pin, _installed(pin.distribution)) for pin in image_frameworks(image))
    wrong = [c for c in checks if c.installed is not None and not c.same_major]
    if wrong and FrameworkVersions(setting) is FrameworkVersions.CHECK:
        first = wrong[0]
        pin = first.pin
        raise WorkerStartupError(
            f"the model's image {image} has {pin.distribution} {pin.version}, but the workers have "
            f"{pin.distribution} {first.installed}, another major version, which may not load the model "
            f"or may predict differently; install {pin.distribution}=={pin.version}.* where the workers "
            "run (the cluster's environment, or the model's code/requirements.txt), or pass "
            "--framework-versions warn to run with the installed version"
        )
    return checks


def versions_line(checks: tuple[FrameworkCheck, ...]) -> str | None:
    """Which versions run the model, and how each differs from the image, for Describe and the notes
    (None: the image names no framework version)."""
    parts = []
    for c in checks:
        if c.matches:
            parts.append(c.describe())
        elif c.installed is None:
            parts.append(f"{c.describe()}: a script that imports it fails")
        elif c.same_major:
            parts.append(f"{c.describe()}: another minor version")
        else:
            parts.append(f"{c.describe()}: another major version, run as --framework-versions warn asks")
    return "; ".join(parts) or None


# Other distributions of the same import package (xgboost's CPU-only wheel is ``xgboost-cpu``).
ALIASES = {"xgboost": ("xgboost", "xgboost-cpu")}


def _installed(distribution: str) -> str | None:
    for name in ALIASES.get(distribution, (distribution,)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _numbers(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
    return tuple(out)


def _major(version: str) -> int | None:
    numbers = _numbers(version)
    return numbers[0] if numbers else None
