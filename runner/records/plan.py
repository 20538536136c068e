"""What a job will read and write: the input listing and each object's output key (docs/contract.md
§4.1, §6.1).

The listing is taken once, when the job is created; objects written later under the prefix (our own
outputs, say) are not read. A ManifestFile names its objects itself: ``prefix + entry`` each, with
the output named after the entry.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from runner.contract.spec import S3DataType, TransformJobSpec
from runner.errors import Problem, SpecError, StorageError
from runner.storage import ObjectInfo, Storage, split_s3_uri

log = logging.getLogger(__name__)

OUTPUT_SUFFIX = ".out"
# Path segments that a store whose keys are paths would resolve, out of S3OutputPath for "..".
DOT_SEGMENTS = (".", "..")
MANIFEST_FORM = '[{"prefix": "s3://bucket/prefix/"}, "relative/key/1", ...]'


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
    """The part of ``key`` that names its output under S3OutputPath (docs/contract.md §6.1's table)."""
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
    manifest = source.data_type is S3DataType.MANIFEST_FILE
    if manifest:
        prefix_uri, entries = read_manifest(source.s3_uri, storage)
        # Not listed (each entry is read when its turn comes): size -1 and no ETag mean "unknown".
        found = [(prefix_uri + entry, -1, "", entry.lstrip("/")) for entry in entries]
    elif source.data_type is S3DataType.S3_PREFIX:
        prefix_uri = source.s3_uri
        _, prefix = split_s3_uri(prefix_uri)
        objects: list[ObjectInfo] = list(storage.list_objects(prefix_uri))
        if not objects:
            raise _uri_error(source.s3_uri, no_objects_message(source.s3_uri, region))
        found = [(o.uri, o.size, o.etag, relative_key(prefix, o.key)) for o in objects]
    else:
        raise SpecError(
            [
                Problem(
                    "transformInput.dataSource.s3DataSource.s3DataType",
                    str(source.data_type),
                    "Member must be S3Prefix or ManifestFile",
                )
            ]
        )
    out_path = spec.transform_output.s3_output_path
    planned: list[InputObject] = []
    seen: dict[str, tuple[str, str]] = {}  # output URI with "/" runs merged -> (input, output)
    for uri, size, etag, rel in found:
        out = output_uri(out_path, rel)
        dot = next((part for part in rel.split("/") if part in DOT_SEGMENTS), None)
        if dot is not None:
            fix = "change its manifest entry" if manifest else "rename the object"
            raise _uri_error(
                source.s3_uri,
                f"input object {uri} would be written to {out}, but its key relative to the input, "
                f"{rel!r}, has a {dot!r} path segment: where keys are paths (a local folder) that leads "
                f"elsewhere, out of S3OutputPath {out_path} for '..', and S3-compatible stores such as "
                f"SeaweedFS refuse the key; {fix} so that it has no '.' or '..' segment",
            )
        merged = _merge_slashes(out)
        if merged in seen:
            first, first_out = seen[merged]
            written = out if out == first_out else f"{first_out} and {out}, one object where keys are paths"
            raise _uri_error(
                source.s3_uri,
                f"input objects {first} and {uri} would both write {written}; "
                "each input object must map to its own output",
            )
        seen[merged] = (uri, out)
        planned.append(InputObject(uri, size, etag, rel, out))
    in_bucket_prefix = prefix_uri.rstrip("/")
    if out_path.rstrip("/").startswith(in_bucket_prefix):
        log.warning(
            "S3OutputPath %s lies inside the input prefix %s: outputs written now are not read by this "
            "job, but a later job with the same input would read them",
            out_path,
            prefix_uri,
        )
    return planned


def _merge_slashes(uri: str) -> str:
    """``uri`` with runs of ``/`` in its key merged, as a file system (and SeaweedFS) merges them."""
    scheme, sep, rest = uri.partition("://")
    return scheme + sep + re.sub("/{2,}", "/", rest)


def _uri_error(uri: str, text: str) -> SpecError:
    return SpecError([Problem("transformInput.dataSource.s3DataSource.s3Uri", uri, text)])


def read_manifest(uri: str, storage: Storage) -> tuple[str, list[str]]:
    """A ManifestFile's prefix and entries (docs/contract.md §4.1):
    ``[{"prefix": "s3://b/p/"}, "rel/1", ...]``.

    Each input is ``prefix + entry``, plain concatenation; the objects need not exist yet (a missing
    one fails when it is read). A manifest that cannot be read or parsed, or that repeats an entry,
    is refused here, before anything runs.
    """
    try:
        text = storage.read_bytes(uri).decode("utf-8")
        manifest = json.loads(text)
    except StorageError as e:
        raise _uri_error(uri, f"the manifest cannot be read: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _uri_error(uri, f"the manifest is not valid JSON: {e}") from None
    except RecursionError:
        raise _uri_error(uri, "the manifest is not valid JSON: it nests too deeply to be read") from None
    head = manifest[0] if isinstance(manifest, list) and manifest else None
    prefix = head.get("prefix") if isinstance(head, dict) else None
    if not isinstance(prefix, str):
        raise _uri_error(uri, f"the manifest must be {MANIFEST_FORM}; it starts with {text.lstrip()[:40]!r}")
    if not prefix.startswith("s3://") or not prefix[len("s3://") :].split("/", 1)[0]:
        raise _uri_error(uri, f"the manifest's prefix {prefix!r} must be an s3://bucket/prefix URI")
    entries = manifest[1:]
    if not entries:
        raise _uri_error(uri, f"the manifest lists no objects after its prefix; expected {MANIFEST_FORM}")
    first: dict[str, int] = {}
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, str) or not entry:
            raise _uri_error(
                uri,
                f"manifest entry {position} is {json.dumps(entry)}; entries are non-empty strings, "
                "keys relative to the prefix",
            )
        if entry in first:
            raise _uri_error(
                uri,
                f"manifest entries {first[entry]} and {position} are both {entry!r}; each object may be "
                "listed once (its output is named after the entry)",
            )
        first[entry] = position
    return prefix, list(first)
