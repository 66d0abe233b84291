"""Fixtures for the myhibachi tests: the same service tests on SQLite and PostgreSQL, the
cache-behaviour tests on memory:// and a real Redis.

Servers come from the shared session fixtures in tests/conftest.py (``redis_url``,
``postgres_url``, ``unique_namespace``); each PostgreSQL test gets a fresh database.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from hibachi_support import Poster, booking_payload, running_app
from sqlalchemy.engine import make_url

import freshcache
from myhibachi.settings import Settings

# ------------------------------------------------------------------------------ databases

_DB_COUNTER = itertools.count()


async def _admin(server_url: str, sql: str) -> None:
    import asyncpg

    url = make_url(server_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the PostgreSQL of
    ``postgres_url`` (private, or DATABASE_URL's), dropped again after the test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/myhibachi.sqlite3"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"myhibachi_{os.getpid()}_{next(_DB_COUNTER)}_{uuid.uuid4().hex[:6]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _fresh_default_cache() -> Iterator[None]:
    """Each app configures freshcache's process-wide default cache (and closes it when it
    stops): leave a fresh in-memory default behind, not a closed one."""
    yield
    freshcache.configure(url="memory://", namespace="freshcache")


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/myhibachi.sqlite3"


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


# ------------------------------------------------------------------------------ the app


@pytest.fixture
def make_settings(unique_namespace: str) -> Callable[..., Settings]:
    def make(database_url: str, cache_url: str = "memory://", **overrides: Any) -> Settings:
        return Settings(
            database_url=database_url,
            cache_url=cache_url,
            cache_namespace=unique_namespace,
            # Tests count hits and misses: a busy machine's slow reply must not become a bypass.
            **{"cache_timeout": 2.0, **overrides},
        )

    return make


@pytest.fixture
async def client(
    database_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on SQLite and on PostgreSQL (memory:// cache)."""
    async with running_app(make_settings(database_url)) as (_app, c):
        yield c


@pytest.fixture
async def cache_client(
    sqlite_url: str, cache_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on SQLite with the cache on memory:// and on a real Redis. These tests count
    hits and misses: a generous cache timeout keeps a loaded machine from turning a slow
    reply into a bypass that would change the counts."""
    async with running_app(make_settings(sqlite_url, cache_url, cache_timeout=2.0)) as (_app, c):
        yield c


@pytest.fixture
def book(client: httpx.AsyncClient) -> Poster:
    """POST /api/bookings with a valid payload, overridden by keyword arguments."""

    async def post(**overrides: Any) -> httpx.Response:
        return await client.post("/api/bookings", json=booking_payload(**overrides))

    return post
