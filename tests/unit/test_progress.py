"""`run`'s progress when stderr is not a terminal: plain lines a log can keep."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from runner.cli.console import ProgressView
from runner.jobs.counters import JobCounters


def test_plain_progress_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    view = ProgressView(argparse.Namespace(), "job", tmp_path / "jobs.sqlite")
    assert not view.live  # pytest's captured stderr is not a terminal
    view.update(
        JobCounters(objects_total=3, objects_done=1, objects_failed=1, records=1234, bytes_in=5_000_000)
    )
    view.update(JobCounters(objects_total=3, objects_done=3, records=9999, bytes_in=9_000_000))  # too soon
    view.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "objects 2/3" in lines[0] and "records 1,234" in lines[0] and "5.0 MB in" in lines[0]
    assert "1 failed" in lines[0] and "records/s" in lines[0]
