"""Errors to HTTP: 404, 409, and 422 in FastAPI's shape (naming the field, not echoing the
input), and a bare 500 for anything unexpected."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from myhibachi.api.error_bodies import compact_errors, shorten
from myhibachi.services.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger("myhibachi.api")


def install_error_handlers(app: FastAPI, *, max_error_entries: int) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": compact_errors(exc.errors(), max_error_entries)}, status_code=422
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(_request: Request, exc: InvalidInput) -> JSONResponse:
        detail = [
            {
                "loc": [exc.location, exc.field],
                "msg": shorten(exc.message, 160),
                "type": "value_error",
            }
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=409)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback; the client gets no internals.
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return JSONResponse({"detail": "internal server error"}, status_code=500)
