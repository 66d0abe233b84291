"""The same promise through a real server: uvicorn on a free port, httpx over a socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi_app import Database, build_app

from freshcache import Cache


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def served(route_cache: Cache) -> AsyncIterator[tuple[str, Database]]:
    db = Database()
    port = free_port()
    config = uvicorn.Config(
        build_app(route_cache, db), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):  # a bound on a broken start, not a speed assertion
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", db
    finally:
        server.should_exit = True
        await task


async def test_etag_304_and_invalidation_through_uvicorn(served: tuple[str, Database]) -> None:
    base, db = served
    async with httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/availability/2030-10-11")
        assert first.status_code == 200
        etag = first.headers["etag"]
        cached = await client.get("/availability/2030-10-11", headers={"if-none-match": etag})
        assert cached.status_code == 304
        assert (await client.post("/bookings/2030-10-11")).status_code == 200
        after = await client.get("/availability/2030-10-11", headers={"if-none-match": etag})
        assert after.status_code == 200
        assert after.json() == {"day": "2030-10-11", "version": 2}
        assert after.headers["etag"] != etag
    assert db.loads == 2
