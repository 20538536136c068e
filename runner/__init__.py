"""SageMaker Batch Transform jobs, unchanged, on Ray."""

__version__ = "0.1.0"
