"""Which AWS settings travel from the driver to the tasks and workers on Ray's nodes, and where the
driver's own S3 reads (listing the input, the model's ETag) run.

On a Ray this process started, the nodes are this machine and its user: the whole ``AWS_*``
environment travels, so tasks see the driver's settings as they are now. On a cluster that was
joined, each node reaches S3 with its own credential chain (its environment, instance profile, IRSA
web identity), as SageMaker's instances use the job's role rather than the caller's keys: only where
S3 is and how to retry travel. The driver's keys go too only when the user asks for it
(``--forward-aws-credentials``), and then as task arguments, never in a runtime_env (which Ray logs),
so no secret appears in Describe, a log line or a runtime_env dump.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ray

from runner.engine.calls import ray_get
from runner.errors import StorageError
from runner.storage.s3 import S3Settings

# Where S3 is and how to reach it: safe to send anywhere, and what a node may lack.
TRAVELLING = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
)
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

T = TypeVar("T")


@dataclass(frozen=True)
class AwsEnvironment:
    """The AWS settings a task or worker applies over its own node's environment."""

    settings: dict[str, str] = field(repr=False)
    # True on a joined cluster: the node's own environment and credential chain fill in the rest.
    # False on this process's own Ray: ``settings`` is the driver's whole AWS environment.
    node_chain: bool = False

    @property
    def carries_keys(self) -> bool:
        return "AWS_ACCESS_KEY_ID" in self.settings

    def s3(self) -> S3Settings:
        """How this process reaches S3: the node's settings (on a cluster) with these over them."""
        base = {k: v for k, v in os.environ.items() if k.startswith("AWS_")} if self.node_chain else {}
        return S3Settings.from_env({**base, **self.settings})

    @contextmanager
    def applied(self) -> Iterator[None]:
        """These settings in os.environ for the block (code that builds its own clients), then the
        process's own back: Ray reuses a task's process for other tasks."""
        saved = dict(os.environ)
        if not self.node_chain:
            for name in [k for k in os.environ if k.startswith("AWS_")]:
                del os.environ[name]
        os.environ.update(self.settings)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def aws_environment(own_ray: bool, forward_credentials: bool) -> AwsEnvironment:
    """What travels from this process (see the module's docstring)."""
    if own_ray:
        return AwsEnvironment({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    settings = {k: os.environ[k] for k in TRAVELLING if os.environ.get(k)}
    if forward_credentials:
        settings.update(_driver_keys())
    return AwsEnvironment(settings, node_chain=True)


def _driver_keys() -> dict[str, str]:
    """The driver's credentials as botocore resolves them (environment, profile, SSO, role), frozen:
    temporary ones are not refreshed on the nodes."""
    import botocore.exceptions
    import botocore.session

    try:
        credentials = botocore.session.get_session().get_credentials()
    except botocore.exceptions.BotoCoreError as e:  # a named profile that is missing, a bad config file
        raise StorageError(
            f"--forward-aws-credentials: cannot read this process's AWS credentials: {e}"
        ) from None
    if credentials is None:
        raise StorageError(
            "--forward-aws-credentials: this process has no AWS credentials to forward (none in "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, SSO or a role); leave the flag off to "
            "let each node use its own"
        )
    frozen = credentials.get_frozen_credentials()
    keys = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        keys["AWS_SESSION_TOKEN"] = frozen.token
    return keys


def _call_on_node(fn: Callable[..., T], args: tuple[Any, ...], aws: AwsEnvironment) -> T:
    with aws.applied():
        return fn(*args)


# No CPU: a listing or a HEAD request, run before any worker holds the cluster's CPUs.
_remote_call_on_node: Any = ray.remote(num_cpus=0, max_retries=0)(_call_on_node)


def where_nodes_read(aws: AwsEnvironment, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` where S3 is read with the nodes' credentials: in this process on its own Ray,
    else in a task on one of the cluster's nodes (the driver may hold no credentials at all)."""
    if not aws.node_chain:
        return fn(*args)
    result: T = ray_get(_remote_call_on_node.remote(fn, args, aws))
    return result
