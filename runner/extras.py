"""Optional dependencies: which extra of the package installs each, and the error that says so.

A plain ``pip install batch-transform-runner`` runs jobs against any S3 endpoint. The pieces that only
some jobs or commands use come with extras, so that a plain install stays light and onnxruntime's CPU
and GPU builds (which cannot be installed side by side) stay the user's choice.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from runner.errors import MissingExtraError

DISTRIBUTION = "batch-transform-runner"


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """``module`` imported, or a MissingExtraError that names what needs it and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{needed_for} needs {module.split('.')[0]}, which is not installed; install it with: "
            f"{install_hint(extra)}",
            extra=extra,
        ) from e
