"""Route caching over HTTP on memory:// and the real Redis: ETag and 304, invalidation by the
function-caching patterns, per-user isolation, ``Cache-Control: no-cache``, and the
consistency race driven with events."""

from __future__ import annotations

import asyncio

from fastapi_app import Database, build_app, http_client

from freshcache import Cache

DAY = "2030-10-11"
OTHER = "2030-10-12"


async def test_a_matching_etag_gets_a_304_after_validation(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        first = await client.get(f"/availability/{DAY}")
        assert first.status_code == 200
        assert first.json() == {"day": DAY, "version": 1}
        etag = first.headers["etag"]
        assert etag.startswith('"')
        assert etag.endswith('"')
        assert first.headers["cache-control"] == "no-cache"

        again = await client.get(f"/availability/{DAY}", headers={"if-none-match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "no-cache"

        for header in (f"W/{etag}", f'"other", {etag}', "*"):
            response = await client.get(f"/availability/{DAY}", headers={"if-none-match": header})
            assert response.status_code == 304, header
        other = await client.get(f"/availability/{DAY}", headers={"if-none-match": '"nope"'})
        assert other.status_code == 200
        assert other.headers["etag"] == etag  # a hit: the same entry, the same tag
        assert other.json() == first.json()
    assert db.loads == 1  # one computation; every other answer came from the entry
    counters = route_cache.stats()["booking:availability:{day}"]
    assert counters.hits == 5
    assert counters.misses == 1


async def test_a_write_invalidates_the_route_and_its_etag(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        old = await client.get(f"/availability/{DAY}")
        untouched = await client.get(f"/availability/{OTHER}")
        assert (await client.post(f"/bookings/{DAY}")).status_code == 200

        new = await client.get(
            f"/availability/{DAY}", headers={"if-none-match": old.headers["etag"]}
        )
        assert new.status_code == 200  # a stale ETag never gets a 304
        assert new.json() == {"day": DAY, "version": 2}
        assert new.headers["etag"] != old.headers["etag"]
        cached = await client.get(
            f"/availability/{DAY}", headers={"if-none-match": new.headers["etag"]}
        )
        assert cached.status_code == 304

        # The write invalidated its own day only.
        other = await client.get(
            f"/availability/{OTHER}", headers={"if-none-match": untouched.headers["etag"]}
        )
        assert other.status_code == 304
    assert db.loads == 3


async def test_invalidate_cache_on_the_write_endpoint_itself(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        old = await client.get(f"/availability/{DAY}")
        closed = await client.post(f"/days/{DAY}/close")
        assert closed.json() == {"closed": DAY}
        new = await client.get(
            f"/availability/{DAY}", headers={"if-none-match": old.headers["etag"]}
        )
        assert new.status_code == 200
        assert new.json()["version"] == 101


async def test_an_imperative_invalidation_by_prefix_reaches_routes(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        old = await client.get(f"/availability/{DAY}")
        sync_old = await client.get(f"/sync/{DAY}")
        await route_cache.invalidate("booking:*")
        db.versions[DAY] = 5
        new = await client.get(
            f"/availability/{DAY}", headers={"if-none-match": old.headers["etag"]}
        )
        assert new.status_code == 200
        assert new.json()["version"] == 5
        sync_new = await client.get(
            f"/sync/{DAY}", headers={"if-none-match": sync_old.headers["etag"]}
        )
        assert sync_new.status_code == 200  # a sync route, run in the thread pool
        assert sync_new.json()["version"] == 5


async def test_a_response_cached_for_one_user_is_never_served_to_another(
    route_cache: Cache,
) -> None:
    db = Database()
    alice = {"authorization": "Bearer alice-token"}
    bob = {"authorization": "Bearer bob-token"}
    async with http_client(build_app(route_cache, db)) as client:
        first = await client.get("/me/bookings", headers=alice)
        assert first.json() == {"user": "alice", "bookings": [10]}
        assert first.headers["cache-control"] == "private, no-cache"
        assert first.headers["vary"] == "Authorization"

        for_bob = await client.get(
            "/me/bookings", headers={**bob, "if-none-match": first.headers["etag"]}
        )
        assert for_bob.status_code == 200  # alice's ETag means nothing for bob
        assert for_bob.json() == {"user": "bob", "bookings": [20]}
        assert for_bob.headers["etag"] != first.headers["etag"]

        again = await client.get("/me/bookings", headers=alice)
        assert again.json() == first.json()
        assert again.headers["etag"] == first.headers["etag"]  # alice's own entry
        assert (await client.get("/me/bookings", headers=bob)).json()["user"] == "bob"

        denied = await client.get("/me/bookings", headers={"authorization": "Bearer stolen"})
        assert denied.status_code == 401  # the dependency still runs before any cached answer
    assert db.loads == 2


async def test_cache_control_no_cache_recomputes_and_stores(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        first = await client.get(f"/availability/{DAY}")
        db.versions[DAY] = 7  # changed behind the cache's back (no invalidation)
        hit = await client.get(f"/availability/{DAY}")
        assert hit.json()["version"] == 1

        fresh = await client.get(f"/availability/{DAY}", headers={"cache-control": "no-cache"})
        assert fresh.status_code == 200
        assert fresh.json()["version"] == 7
        assert fresh.headers["etag"] != first.headers["etag"]
        stored = await client.get(f"/availability/{DAY}")
        assert stored.headers["etag"] == fresh.headers["etag"]  # the refresh was stored

        # no-cache with the old tag: recomputed, so never a 304 for the old entry.
        again = await client.get(
            f"/availability/{DAY}",
            headers={
                "cache-control": "max-age=0, no-cache",
                "if-none-match": first.headers["etag"],
            },
        )
        assert again.status_code == 200
        pragma = await client.get(f"/availability/{DAY}", headers={"pragma": "no-cache"})
        assert pragma.headers["etag"] not in (first.headers["etag"], again.headers["etag"])
    assert db.loads == 4


async def test_no_cache_can_be_ignored(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db, no_cache_refreshes=False)) as client:
        first = await client.get(f"/availability/{DAY}")
        ignored = await client.get(f"/availability/{DAY}", headers={"cache-control": "no-cache"})
        assert ignored.headers["etag"] == first.headers["etag"]
    assert db.loads == 1


async def test_other_statuses_are_returned_and_not_stored(route_cache: Cache) -> None:
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        for _ in range(2):
            response = await client.get(f"/missing/{DAY}")
            assert response.status_code == 404
            assert response.json() == {"detail": f"no {DAY}"}
            assert "etag" not in response.headers
        for _ in range(2):
            raised = await client.get(f"/closed/{DAY}")
            assert raised.status_code == 409
            assert raised.json() == {"detail": f"{DAY} is closed"}
    assert db.loads == 4
    assert await route_cache.keys("booking:missing:*") == []
    assert await route_cache.keys("booking:closed:*") == []


async def test_a_read_that_loaded_before_a_write_is_never_served_after_it(
    route_cache: Cache,
) -> None:
    """The consistency race on a route: the reader loads version 1 and is held; the write
    commits and its invalidation returns; then the reader stores its response. No request
    that starts after the write may get version 1, by body or by a 304 on its ETag."""
    db = Database()
    async with http_client(build_app(route_cache, db)) as client:
        gate = db.hold()
        reader = asyncio.create_task(client.get(f"/availability/{DAY}"))
        await db.loaded.wait()  # the reader has read the tokens and the old row
        assert (await client.post(f"/bookings/{DAY}")).status_code == 200
        gate.set()
        late = await reader
        assert late.json()["version"] == 1  # it answers what it read: that is fine

        after = await client.get(
            f"/availability/{DAY}", headers={"if-none-match": late.headers["etag"]}
        )
        assert after.status_code == 200
        assert after.json()["version"] == 2
        assert after.headers["etag"] != late.headers["etag"]
        assert (await client.get(f"/availability/{DAY}")).json()["version"] == 2
    assert db.loads == 2
    assert route_cache.stats()["booking:availability:{day}"].stale == 1
