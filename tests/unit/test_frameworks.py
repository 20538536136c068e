"""Framework versions from a SageMaker image's tag, and how the installed ones compare."""

from __future__ import annotations

import pytest

from runner.errors import WorkerStartupError
from runner.model import frameworks
from runner.model.frameworks import FrameworkCheck, FrameworkPin, check_frameworks, image_frameworks

ECR = "683313688378.dkr.ecr.us-east-1.amazonaws.com"
DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (f"{ECR}/sagemaker-xgboost:1.7-1", [("xgboost", "1.7")]),
        (f"{ECR}/sagemaker-xgboost:0.90-2-cpu-py3", [("xgboost", "0.90")]),
        (f"{ECR}/sagemaker-scikit-learn:1.2-1-cpu-py3", [("scikit-learn", "1.2")]),
        (f"{DLC}/pytorch-inference:2.1.0-cpu-py310-ubuntu20.04-sagemaker", [("torch", "2.1.0")]),
        (f"{DLC}/pytorch-inference:2.1-cpu-py310", [("torch", "2.1")]),
        (f"{DLC}/mxnet-inference:1.9.0-cpu-py38-ubuntu20.04", [("mxnet", "1.9.0")]),
        (
            f"{DLC}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-gpu-py310-cu118-ubuntu20.04",
            [("torch", "2.1.0"), ("transformers", "4.37.0")],
        ),
        (f"{ECR}/sagemaker-xgboost:latest", []),  # no version in the tag
        (f"{ECR}/sagemaker-xgboost@sha256:{'0' * 64}", []),  # a digest names no version
        ("my-server:1.2", []),  # not a framework image
        (None, []),
    ],
)
def test_image_tags_name_their_framework_versions(image: str | None, expected: list[tuple[str, str]]) -> None:
    assert image_frameworks(image) == tuple(FrameworkPin(d, v) for d, v in expected)


@pytest.mark.parametrize(
    ("installed", "matches", "same_major"),
    [
        ("1.7.6", True, True),
        ("1.7", True, True),
        ("1.6.2", False, True),
        ("2.1.4", False, False),
        (None, False, False),
    ],
)
def test_installed_against_the_tag(installed: str | None, matches: bool, same_major: bool) -> None:
    check = FrameworkCheck(FrameworkPin("xgboost", "1.7"), installed)
    assert (check.matches, check.same_major) == (matches, same_major)


def test_a_different_major_is_refused_unless_warned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frameworks, "_installed", lambda distribution: "2.1.0")
    with pytest.raises(
        WorkerStartupError, match=r"has scikit-learn 1\.2, but the workers have scikit-learn 2\.1\.0"
    ):
        check_frameworks(f"{ECR}/sagemaker-scikit-learn:1.2-1-cpu-py3")
    (check,) = check_frameworks(f"{ECR}/sagemaker-scikit-learn:1.2-1-cpu-py3", "warn")
    assert frameworks.versions_line((check,)) == (
        "scikit-learn 2.1.0 (the image's 1.2): another major version, run as --framework-versions warn asks"
    )


def test_a_missing_framework_is_said_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frameworks, "_installed", lambda distribution: None)
    checks = check_frameworks(f"{ECR}/sagemaker-xgboost:1.7-1")
    assert (
        frameworks.versions_line(checks)
        == "xgboost not installed (the image's 1.7): a script that imports it fails"
    )
