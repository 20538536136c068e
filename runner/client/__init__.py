"""Talking to a SageMaker API, ours or AWS's: the CLI against ``serve``, and ``run --prefer
sagemaker`` with its fallback to Ray."""
