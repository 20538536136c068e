"""The SageMaker-compatible control plane (``batch-transform serve``): AWS JSON 1.1 over HTTP,
SigV4-checked, and the fault modes that play an unavailable SageMaker."""
