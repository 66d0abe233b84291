"""A request-body cap as a pure ASGI middleware: 413 before a large body is read.

A declared ``Content-Length`` over the limit is refused before the app runs, so not one byte
of the body is read (the server does not even send ``100 Continue``). A body without a
length (chunked) is counted while it streams in, and refused as soon as the count passes
the limit: the app never holds more than the limit plus one chunk.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would read and buffer the
body itself and runs the app in a separate task.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit. An ``HTTPException``, so
    FastAPI's body reader passes it on (rather than calling it a parse error) and the app's
    HTTP error handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(limit))


def too_large_detail(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent or not a number (the server
    refuses a malformed one before the app sees the request)."""
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Normally the app's handler has answered already; this covers a body read
            # outside FastAPI's handlers (a mounted app), while a response can still start.
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No "Connection: close": the server discards the rest of the body as it arrives
        # (nothing is buffered), so a client that sends its whole body before reading still
        # reads this 413 instead of a reset connection.
        response = JSONResponse({"detail": too_large_detail(self.max_bytes)}, status_code=413)
        await response(scope, receive, send)
