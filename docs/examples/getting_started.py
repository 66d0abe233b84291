"""A FastAPI service with one cached read and one write that invalidates it.

Run it: FRESHCACHE_URL=redis://127.0.0.1:6379/0 uvicorn getting_started:app
(tests/docs/test_examples.py runs it on memory://).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel

import freshcache
from freshcache import cached, invalidate_cache
from freshcache.contrib.prometheus import CONTENT_TYPE_LATEST, render_metrics

DISHES = ["gyoza", "yakisoba"]  # stands in for your database


class Menu(BaseModel):
    dishes: list[str]


@cached(ttl=300, key_prefix="menu")  # ttl: seconds, or a datetime.timedelta
async def get_menu() -> Menu:
    return Menu(dishes=list(DISHES))  # the expensive query


@invalidate_cache("menu:*")  # applied after add_dish returns without raising
async def add_dish(name: str) -> None:
    DISHES.append(name)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # url: $FRESHCACHE_URL (redis://..., rediss://..., redis+cluster://...), else memory://
    cache = freshcache.configure(namespace="menu-service", timeout=0.05)
    try:
        yield
    finally:
        await cache.aclose()  # closes the connections; the service is stopping


app = FastAPI(lifespan=lifespan)


@app.get("/menu")
async def read_menu() -> Menu:
    return await get_menu()


@app.post("/menu/{name}", status_code=201)
async def create_dish(name: str) -> None:
    await add_dish(name)


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return freshcache.get_cache().health()  # no I/O: breaker, pending invalidations


@app.get("/metrics")
async def metrics() -> Response:
    return Response(render_metrics(freshcache.get_cache()), media_type=CONTENT_TYPE_LATEST)
