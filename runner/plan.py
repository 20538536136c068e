"""What a job will read and write: the input listing and each object's output key (CONTRACT 4.1, 6.1).

The listing is taken once, when the job is created; objects written later under the prefix (our own
outputs, say) are not read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runner.errors import Problem, SpecError
from runner.spec import S3DataType, TransformJobSpec
from runner.storage import ObjectInfo, Storage, split_s3_uri

log = logging.getLogger(__name__)

OUTPUT_SUFFIX = ".out"


@dataclass(frozen=True)
class InputObject:
    """One input object and where its results go."""

    uri: str
    size: int
    etag: str
    relative_key: str
    output_uri: str

    @property
    def name(self) -> str:
        """``bucket/key``, the form SageMaker's data log uses for an object."""
        return self.uri.split("://", 1)[-1]


def relative_key(prefix: str, key: str) -> str:
    """The part of ``key`` that names its output under S3OutputPath (CONTRACT 6.1's table)."""
    if key == prefix:
        return key.rsplit("/", 1)[-1]
    if not prefix or prefix.endswith("/"):
        return key[len(prefix) :]
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    # The prefix ends inside a path segment (`in/data` vs `in/data1.csv`): relative to its parent.
    parent = prefix[: prefix.rfind("/") + 1]
    return key[len(parent) :]


def output_uri(output_path: str, rel_key: str) -> str:
    return f"{output_path.rstrip('/')}/{rel_key}{OUTPUT_SUFFIX}"


def no_objects_message(uri: str, region: str) -> str:
    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    return (
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the '
        f"bucket exists in the selected region ({region}), that objects exist under that S3 prefix, and "
        f'that the role has "s3:ListBucket" permissions on bucket "{bucket}".'
    )


def plan_inputs(spec: TransformJobSpec, storage: Storage, region: str = "us-east-1") -> list[InputObject]:
    """List the input and pair every object with its output URI; fail before anything runs."""
    source = spec.transform_input
    if source.data_type is not S3DataType.S3_PREFIX:
        raise SpecError(
            [
                Problem(
                    "transformInput.dataSource.s3DataSource.s3DataType",
                    str(source.data_type),
                    "Member must be S3Prefix (ManifestFile is not supported yet by this runner)",
                )
            ]
        )
    _, prefix = split_s3_uri(source.s3_uri)
    objects: list[ObjectInfo] = list(storage.list_objects(source.s3_uri))
    if not objects:
        raise SpecError(
            [
                Problem(
                    "transformInput.dataSource.s3DataSource.s3Uri",
                    source.s3_uri,
                    no_objects_message(source.s3_uri, region),
                )
            ]
        )
    out_path = spec.transform_output.s3_output_path
    planned: list[InputObject] = []
    seen: dict[str, str] = {}
    for obj in objects:
        rel = relative_key(prefix, obj.key)
        out = output_uri(out_path, rel)
        if out in seen:
            raise SpecError(
                [
                    Problem(
                        "transformInput.dataSource.s3DataSource.s3Uri",
                        source.s3_uri,
                        f"input objects {seen[out]} and {obj.uri} would both write {out}; "
                        "each input object must map to its own output",
                    )
                ]
            )
        seen[out] = obj.uri
        planned.append(InputObject(obj.uri, obj.size, obj.etag, rel, out))
    in_bucket_prefix = source.s3_uri.rstrip("/")
    if out_path.rstrip("/").startswith(in_bucket_prefix):
        log.warning(
            "S3OutputPath %s lies inside the input prefix %s: outputs written now are not read by this "
            "job, but a later job with the same input would read them",
            out_path,
            source.s3_uri,
        )
    return planned
