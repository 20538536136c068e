"""Optional dependencies: a missing one fails with a message naming the extra that installs it."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from runner.errors import MissingExtraError, RunnerError
from runner.extras import require
from runner.model.codecs import decode_npz
from runner.storage.embedded import find_weed


def test_require_names_the_extra_and_what_needs_it() -> None:
    with pytest.raises(MissingExtraError) as caught:
        require("no_such_module_here.sub", "npz", "decoding application/x-npz")
    message = str(caught.value)
    assert "decoding application/x-npz needs no_such_module_here" in message
    assert "pip install 'batch-transform-runner[npz]'" in message
    assert caught.value.extra == "npz" and isinstance(caught.value, RunnerError)


def test_require_returns_the_module_when_it_is_there() -> None:
    assert require("json", "none", "nothing").dumps([1]) == "[1]"


def test_npz_without_scipy_names_the_npz_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)  # an import of it now fails, as if not installed
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(MissingExtraError, match=r"batch-transform-runner\[npz\]"):
        decode_npz(b"PK")


def test_report_png_without_matplotlib_names_the_plots_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runner.cost.report import plot_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"report --png needs matplotlib.*\[plots\]"):
        plot_report({"timeline": {}, "cost": {}, "workers": []}, tmp_path / "r.png")


def test_embedded_s3_without_seaweedfs_names_the_local_s3_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(empty))
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingExtraError, match=r"batch-transform-runner\[local-s3\]") as caught:
        find_weed()
    assert caught.value.extra == "local-s3"
