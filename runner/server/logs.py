"""The CloudWatch Logs operations the SageMaker Python SDK calls while it waits on a transform job.

``Transformer.transform(wait=True, logs=True)``, the SDK's default in v2 and v3, tails the job's
streams in ``/aws/sagemaker/TransformJobs``: it lists them with ``DescribeLogStreams``
(``logStreamNamePrefix="<job>/"``) and reads each with ``GetLogEvents`` (``startFromHead=True``,
paging with ``nextForwardToken`` until a page is empty). ``serve`` answers those two operations,
AWS JSON 1.1 with target prefix ``Logs_20140328``, SigV4-checked for service ``logs``, from the
streams the runner keeps in the job store (runner/jobs/joblog.py). Point boto3 at it with
``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``.

Request shapes are checked against botocore's own ``logs`` model; the errors and limits are
CloudWatch's: ``ResourceNotFoundException`` for a group or stream that does not exist,
``InvalidParameterException`` for a bad combination or token, pages of at most 10,000 events and
1 MB (each event counted as its UTF-8 message plus 26 bytes, as CloudWatch counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner.contract.shapes import validate_request
from runner.errors import SpecError
from runner.jobs.joblog import LOG_GROUP, JobLog, LogEvent
from runner.jobs.store import DEFAULT_ACCOUNT, DEFAULT_REGION, JobStore

TARGET_PREFIX = "Logs_20140328."
SIGNING_NAME = "logs"
MAX_EVENTS = 10_000
MAX_PAGE_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_STREAMS = 50
GROUP_NOT_FOUND = "The specified log group does not exist."
STREAM_NOT_FOUND = "The specified log stream does not exist."


class LogsError(Exception):
    """An error answer, as CloudWatch Logs sends it: code and text (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message, self.status = code, message, 400
        super().__init__(f"{code}: {message}")


def _invalid(message: str) -> LogsError:
    return LogsError("InvalidParameterException", message)


def _group_arn(region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{LOG_GROUP}"


class LogsPlane:
    """``call("GetLogEvents", body) -> response`` over the job store's streams."""

    def __init__(self, store: JobStore) -> None:
        self.log = JobLog(store)
        self.operations: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "DescribeLogStreams": self.describe_log_streams,
            "GetLogEvents": self.get_log_events,
        }

    def call(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise LogsError(
                "UnknownOperationException",
                f"Unknown operation {TARGET_PREFIX}{operation}; this server answers "
                + ", ".join(self.operations),
            )
        problems = validate_request(operation, body, service="logs")
        if problems:
            raise LogsError("ValidationException", str(SpecError(problems)))
        return handler(body)

    def _group(self, body: Mapping[str, Any]) -> None:
        """The request names the transform jobs' group, by name or ARN, and it exists (it does once a
        job has written a line, as in CloudWatch)."""
        name, identifier = body.get("logGroupName"), body.get("logGroupIdentifier")
        if name is not None and identifier is not None:
            raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
        if name is None and identifier is None:
            raise _invalid("Either logGroupName or logGroupIdentifier must be specified.")
        group = name if name is not None else str(identifier).removesuffix(":*")
        if group not in (LOG_GROUP, _group_arn()) or not self.log.has_events():
            raise LogsError("ResourceNotFoundException", GROUP_NOT_FOUND)

    def describe_log_streams(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._group(body)
        prefix = body.get("logStreamNamePrefix", "")
        order = body.get("orderBy", "LogStreamName")
        if prefix and order == "LastEventTime":
            raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = self.log.streams(prefix)
        if order == "LastEventTime":
            streams.sort(key=lambda s: s.last_event)
        if body.get("descending"):
            streams.reverse()
        start = _offset(body.get("nextToken"))
        limit = body.get("limit", MAX_STREAMS)
        page = streams[start : start + limit]
        out: dict[str, Any] = {
            "logStreams": [
                {
                    "logStreamName": s.name,
                    "creationTime": s.first_event,
                    "firstEventTimestamp": s.first_event,
                    "lastEventTimestamp": s.last_event,
                    "lastIngestionTime": s.last_ingestion,
                    "arn": f"{_group_arn()}:log-stream:{s.name}",
                    "storedBytes": s.stored_bytes,
                }
                for s in page
            ]
        }
        if start + limit < len(streams):
            out["nextToken"] = f"n/{start + limit}"
        return out

    def get_log_events(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._group(body)
        stream = body["logStreamName"]
        if stream not in {s.name for s in self.log.streams(stream)}:
            raise LogsError("ResourceNotFoundException", STREAM_NOT_FOUND)
        limit = body.get("limit", MAX_EVENTS)
        window = {"start_ms": body.get("startTime"), "end_ms": body.get("endTime")}
        token = body.get("nextToken")
        if token is None:
            forward = bool(body.get("startFromHead", False))
            events = self.log.events(stream, **window, limit=limit, from_head=forward)
            after = before = None
        else:
            forward, mark = _token(token)
            after, before = (mark, None) if forward else (None, mark)
            events = self.log.events(
                stream, **window, after=after, before=before, limit=limit, from_head=forward
            )
        events = _fit(events, keep_first=forward)
        if events:
            marks = (events[-1].seq, events[0].seq)
        elif after is not None:  # nothing new: the same place again, so a caller polls until lines come
            marks = (after, after + 1)
        elif before is not None:
            marks = (before - 1, before)
        else:  # a first read of an empty window: from the start, or (tail) after the last line
            last = 0 if forward else self._last_seq(stream)
            marks = (last, last + 1)
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion} for e in events
            ],
            "nextForwardToken": f"f/{marks[0]}",
            "nextBackwardToken": f"b/{marks[1]}",
        }

    def _last_seq(self, stream: str) -> int:
        last = self.log.events(stream, limit=1, from_head=False)
        return last[-1].seq if last else 0


def _offset(token: Any) -> int:
    if token is None:
        return 0
    kind, _, number = str(token).partition("/")
    if kind != "n" or not number.isdigit():
        raise _invalid("The specified nextToken is invalid.")
    return int(number)


def _token(token: str) -> tuple[bool, int]:
    """(forward, sequence mark) of a ``nextForwardToken`` / ``nextBackwardToken``."""
    kind, _, number = token.partition("/")
    if kind not in ("f", "b") or not number.isdigit():
        raise _invalid("The specified nextToken is invalid.")
    return kind == "f", int(number)


def _fit(events: list[LogEvent], keep_first: bool) -> list[LogEvent]:
    """The events a 1 MB page holds: the first ones reading forward, the last ones reading back."""
    ordered = events if keep_first else events[::-1]
    kept, size = [], 0
    for e in ordered:
        size += len(e.message.encode("utf-8")) + EVENT_OVERHEAD
        if size > MAX_PAGE_BYTES:
            break
        kept.append(e)
    return kept if keep_first else kept[::-1]
