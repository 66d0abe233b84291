"""415 for a body that is not JSON on an endpoint that takes JSON.

Without this, FastAPI hands a text/plain or form body to the model as raw bytes, and the
client learns only that its input "should be a valid dictionary". A route dependency runs
before the body is validated, so the 415 comes first.
"""

from __future__ import annotations

from email.message import Message
from typing import Any

from fastapi import HTTPException, Request

from myhibachi.api.error_bodies import shorten

JSON_ONLY: dict[int | str, dict[str, Any]] = {
    415: {"description": "the body is not application/json"},
}


def is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, with any parameters (charset)."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise HTTPException(415, "Content-Type must be application/json (none was given)")
    if not is_json(content_type):
        raise HTTPException(
            415, f"Content-Type must be application/json, not {shorten(content_type, 40)!r}"
        )
