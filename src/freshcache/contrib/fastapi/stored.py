"""A response as the cache stores it, and how an endpoint's result becomes one.

An endpoint may return a ``Response`` or a value that FastAPI would serialise. The value is
serialised here the way FastAPI does it (validated against the route's response model, then
``jsonable_encoder`` and ``JSONResponse``), because the stored entry is the response body: a
hit and a 304 are answered without running the endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
from fastapi.encoders import jsonable_encoder
from starlette.responses import JSONResponse, Response

#: Response headers never stored: set per response, or private to one caller.
_NOT_STORED = frozenset({"content-length", "etag", "vary", "cache-control", "date"})


class StoredResponse(pydantic.BaseModel):
    """The cached entry of one route call: the response and the ETag it was computed with."""

    model_config = pydantic.ConfigDict(
        frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    status_code: int
    body: bytes
    media_type: str | None
    headers: list[tuple[str, str]]
    etag: str


class Uncacheable(Exception):
    """Raised inside the cached function so that this response is returned but not stored;
    ``request`` is the request it was computed for (the only one it may be sent to)."""

    def __init__(self, response: Response, request: object) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.request = request


def response_adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    """The validator of a route's response model, or None (untyped, or a Response class)."""
    if annotation is None or annotation is Any:
        return None
    if isinstance(annotation, type) and issubclass(annotation, Response):
        return None
    try:
        return pydantic.TypeAdapter(annotation)
    except pydantic.PydanticSchemaGenerationError:
        return None


def to_response(
    result: Any, adapter: pydantic.TypeAdapter[Any] | None, injected: Sequence[Response] = ()
) -> Response:
    """The response FastAPI would send for ``result``: a returned ``Response`` as it is;
    a value serialised, with the status and headers the route set on its injected
    ``Response`` parameters."""
    if isinstance(result, Response):
        return result
    if adapter is not None:
        validated = adapter.validate_python(result, from_attributes=True)
        content = adapter.dump_python(validated, mode="json", by_alias=True)
    else:
        content = jsonable_encoder(result)
    response = JSONResponse(content)
    for sub in injected:
        # FastAPI's injected Response starts without a status; a route may set one.
        if getattr(sub, "status_code", None):
            response.status_code = sub.status_code
        response.headers.raw.extend(sub.headers.raw)
    return response


def store(
    response: Response, etag: str, cacheable_status: frozenset[int], request: object
) -> StoredResponse:
    """The entry for ``response``; ``Uncacheable`` when it must go out but not be kept."""
    body = getattr(response, "body", None)
    if (
        response.status_code not in cacheable_status
        or not isinstance(body, bytes)  # streaming and file responses have no body to keep
        or "set-cookie" in response.headers  # a cookie set for one caller, never replayed
        or response.background is not None  # its tasks must run: return this very response
    ):
        raise Uncacheable(response, request)
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_STORED]
    return StoredResponse(
        status_code=response.status_code,
        body=body,
        media_type=response.media_type,
        headers=headers,
        etag=etag,
    )
