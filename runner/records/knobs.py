"""The input/output extensions of docs/contract.md §9 that a job's RunnerConfig turns on (csv header, quoted
newlines, columnar splitting), checked against the request before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from runner.config import CsvHeader, RunnerConfig
from runner.contract.spec import SplitType
from runner.errors import Problem, SpecError
from runner.records.columnar import is_columnar, media_type
from runner.records.dataprocessing import RecordProcessing


@dataclass(frozen=True)
class InputKnobs:
    """The input/output extensions in force for a job (docs/contract.md §9); all off is SageMaker's
    behaviour."""

    content_type: str = ""  # the job's ContentType, media type only
    csv_header: bool = False  # line 1 of each object is a header, sent atop every payload
    csv_header_in_output: bool = False  # ... and written once atop the .out
    csv_quoted_newlines: bool = False  # Line records end at newlines outside RFC 4180 quotes
    split_columnar: bool = False  # Parquet / Arrow IPC objects split by row group / record batch


def input_knobs(
    config: RunnerConfig,
    content_type: str | None,
    split_type: SplitType,
    processing: RecordProcessing | None,
) -> tuple[InputKnobs, list[str]]:
    """The RunnerConfig knobs that apply to a job's input, and notes on those that do not. A knob that
    cannot work with the request raises SpecError (naming the knob) before anything runs."""
    media = media_type(content_type)
    csv_lines = media == "text/csv" and split_type is SplitType.LINE
    header = config.csv_header is CsvHeader.FIRST_LINE
    notes: list[str] = []
    problems: list[Problem] = []
    where = f"ContentType {content_type or '(unset)'} with SplitType {split_type}"
    if header and not csv_lines:
        notes.append(f"csv_header first-line applies to text/csv split by Line, not to {where}: ignored")
    if config.csv_header_in_output and not header:
        problems.append(
            Problem(
                "RunnerConfig.csv_header_in_output",
                True,
                "needs csv_header first-line (the header it writes)",
            )
        )
    if config.csv_quoted_newlines and not csv_lines:
        notes.append(f"csv_quoted_newlines applies to text/csv split by Line, not to {where}: ignored")
    if config.csv_quoted_newlines and csv_lines and processing is not None:
        problems.append(
            Problem(
                "RunnerConfig.csv_quoted_newlines",
                True,
                "DataProcessing (InputFilter, JoinSource, OutputFilter) reads text/csv records line by line, "
                "so it cannot be combined with csv_quoted_newlines: turn one of them off",
            )
        )
    columnar = config.split_parquet_row_groups and is_columnar(media)
    if config.split_parquet_row_groups and not columnar:
        notes.append(
            "split_parquet_row_groups applies to application/x-parquet and application/vnd.apache.arrow."
            f"file / .stream objects, not to ContentType {content_type or '(unset)'}: ignored"
        )
    if columnar and split_type is not SplitType.NONE:
        problems.append(
            Problem(
                "RunnerConfig.split_parquet_row_groups",
                True,
                f"splits {media} objects by row group itself, so SplitType must be None (SplitType "
                f"{split_type} would cut the binary object at byte patterns)",
            )
        )
    if problems:
        raise SpecError(problems)
    knobs = InputKnobs(
        content_type=media,
        csv_header=header and csv_lines,
        csv_header_in_output=config.csv_header_in_output and csv_lines,
        csv_quoted_newlines=config.csv_quoted_newlines and csv_lines,
        split_columnar=columnar,
    )
    return knobs, notes
