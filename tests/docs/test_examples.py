"""The examples the docs show are real files (docs/examples/), included in the pages by
pymdownx.snippets; these tests run them, so a page cannot show code that does not work."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import freshcache

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


def _reset_default_cache() -> None:
    """Leave the default cache as a fresh process would find it (memory://, default namespace),
    not the example's."""
    freshcache.configure(url="memory://", namespace="freshcache")


@pytest.fixture
def getting_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("FRESHCACHE_URL", "memory://")
    module = load("getting_started")
    yield module
    sys.modules.pop(module.__name__, None)
    _reset_default_cache()


async def test_getting_started_caches_and_invalidates(getting_started: ModuleType) -> None:
    app = getting_started.app
    # The app's own lifespan runs around the requests, as under uvicorn.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        # The lifespan configured the default cache the decorators use.
        cache = freshcache.get_cache()
        assert (cache.namespace, cache.backend_kind) == ("menu-service", "memory")
        first = await client.get("/menu")
        second = await client.get("/menu")
        assert first.json() == second.json() == {"dishes": ["gyoza", "yakisoba"]}
        stats = cache.stats()["menu"]
        assert (stats.misses, stats.hits) == (1, 1)

        assert (await client.post("/menu/okonomiyaki")).status_code == 201
        # The write replaced menu's token: the stored entry is rejected (counted as stale),
        # the function runs again and sees the new dish.
        menu = (await client.get("/menu")).json()
        assert menu == {"dishes": ["gyoza", "yakisoba", "okonomiyaki"]}
        stats = cache.stats()["menu"]
        assert (stats.hits, stats.stale, stats.sets) == (1, 1, 2)

        health = (await client.get("/healthz")).json()
        assert (health["breaker"], health["pending_invalidations"]) == ("closed", 0)
        metrics = (await client.get("/metrics")).text
        assert 'freshcache_hits_total{namespace="menu-service",prefix="menu"} 1.0' in metrics


@pytest.fixture
def unit_of_work_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("FRESHCACHE_URL", "memory://")
    freshcache.configure(namespace="uow-example")
    module = load("unit_of_work")
    yield module
    sys.modules.pop(module.__name__, None)
    _reset_default_cache()


async def test_unit_of_work_invalidates_after_commit_and_not_on_rollback(
    unit_of_work_example: ModuleType, tmp_path: Path
) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    example = unit_of_work_example
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bookings.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(example.Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cache = freshcache.get_cache()
    try:
        async with sessions() as session:
            assert await example.total_guests(session) == 0
            assert await example.total_guests(session) == 0  # a hit
            await example.book(session, 12)
            # Committed, then invalidated: the next read is computed again and sees it.
            assert await example.total_guests(session) == 12
            stats = cache.stats()["booking:stats"]
            assert (stats.hits, stats.invalidations["generation"]) == (1, 1)

            with pytest.raises(ValueError, match="booked by phone"):
                await example.book(session, 30)
            # Rolled back, and nothing was invalidated: the entry from before is still a hit.
            assert await example.total_guests(session) == 12
            stats = cache.stats()["booking:stats"]
            assert (stats.hits, stats.invalidations["generation"]) == (2, 1)
    finally:
        await engine.dispose()
        await cache.aclose()
