"""The command's exit codes, as scripts and CI read them (the README lists them too)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success: the job Completed (compare: the prefixes are equal)
    FAILED = 1  # the job Failed or was Stopped (compare: they differ)
    INVALID = 2  # an invalid request, file or usage; nothing ran
    ERROR = 3  # any other error (storage, workers, the environment)
