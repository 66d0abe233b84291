"""/healthz and /metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from freshcache.contrib.prometheus import render_metrics
from myhibachi.api.middleware import HttpMetrics
from myhibachi.api.state import AppState, get_state

router = APIRouter(tags=["system"])
State = Annotated[AppState, Depends(get_state)]


class DatabaseHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class Health(BaseModel):
    status: str
    database: DatabaseHealth
    cache: dict[str, Any]


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database is unreachable"}},
)
async def healthz(state: State) -> JSONResponse:
    """Database reachability and the cache's health, including its circuit breaker.
    A cache that is down degrades the service (reads go to the database) but is not fatal."""
    backend = state.db.engine.dialect.name
    try:
        await state.db.ping()
        database = DatabaseHealth(ok=True, backend=backend)
    except Exception as exc:  # any failure to reach the database is "not ok", reported
        database = DatabaseHealth(ok=False, backend=backend, error=type(exc).__name__)
    cache = dict(state.cache.health())
    cache_ok = bool(cache.get("reachable")) and cache.get("breaker") == "closed"
    status = "ok" if database.ok and cache_ok else "degraded" if database.ok else "down"
    health = Health(status=status, database=database, cache=cache)
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if database.ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: State) -> Response:
    """The cache's metrics (freshcache) and the service's HTTP metrics, in one exposition."""
    http: HttpMetrics = request.app.state.http_metrics
    return Response(
        render_metrics(state.cache, registry=http.registry), media_type=CONTENT_TYPE_LATEST
    )
