"""The request context the inference toolkit hands to hooks that take one (MMS ``mms/context.py``,
TorchServe's ``ts/context.py``): one request's headers in, response headers and status out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestProcessor:
    """One request's headers and response metadata, as MMS/TorchServe hand them to hooks."""

    request_header: dict[str, str]
    response_header: dict[str, str] = field(default_factory=dict)
    status_code: int = 200
    reason_phrase: str | None = None

    def get_request_property(self, key: str) -> str | None:
        return self.request_header.get(key)

    def get_request_properties(self) -> dict[str, str]:
        return self.request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self.status_code, self.reason_phrase = code, reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self.response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self.response_header


@dataclass(frozen=True)
class Context:
    """What a hook's trailing ``context`` argument receives (MMS ``mms/context.py``):
    ``system_properties["model_dir"]``, request headers via ``request_processor[0]`` or
    ``get_request_header(0, key)``. Model-loading hooks get one without a request."""

    system_properties: dict[str, Any]
    request_processor: list[RequestProcessor] | None = None
    model_name: str = "model"
    manifest: dict[str, Any] = field(default_factory=dict)

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._request(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self._request(idx).get_request_properties()

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._request(idx).get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._request(idx).add_response_property(key, value)

    def set_response_content_type(self, idx: int, value: str) -> None:
        # The toolkit overwrites it with the resolved response type after the hooks return.
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self._request(idx).report_status(code, reason_phrase=phrase)

    def _request(self, idx: int) -> RequestProcessor:
        if not self.request_processor:
            raise RuntimeError("this context belongs to model loading and has no request")
        return self.request_processor[idx]
