"""The ``batch-transform`` command: argument parsing, consoles, exit codes."""

from runner.cli.main import main

__all__ = ["main"]
