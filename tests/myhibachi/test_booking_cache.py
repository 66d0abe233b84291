"""The audit's recommended integration tests, through the HTTP API, on memory:// and on a
real Redis (the `cache_client` fixture): every write recomputes exactly what it changed.

Recomputations are counted with ``cache.stats()`` (misses + stale), keyed by the key_prefix
template as written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest
from hibachi_support import app_state, booking_payload, free_port, future, running_app

from myhibachi.settings import Settings

STATS = "booking:stats"
AVAILABILITY = "booking:availability:{event_date}"


def misses(c: httpx.AsyncClient, prefix: str) -> int:
    """Reads that ran the function: plain misses plus stale rejections (an entry stored
    under generation tokens that a write has since replaced)."""
    record = app_state(c).cache.stats().get(prefix)
    return record.misses + record.stale if record is not None else 0


def hits(c: httpx.AsyncClient, prefix: str) -> int:
    record = app_state(c).cache.stats().get(prefix)
    return record.hits if record is not None else 0


async def create(c: httpx.AsyncClient, **overrides: object) -> dict[str, object]:
    response = await c.post("/api/bookings", json=booking_payload(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def availability(c: httpx.AsyncClient, day: str) -> dict[str, object]:
    response = await c.get("/api/availability", params={"date": day})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_create_booking_invalidates_stats(cache_client: httpx.AsyncClient) -> None:
    c = cache_client
    before = (await c.get("/api/stats")).json()  # 1. prime
    assert (await c.get("/api/stats")).json() == before
    assert (misses(c, STATS), hits(c, STATS)) == (1, 1)

    await create(c)  # 2. create a booking

    after = (await c.get("/api/stats")).json()  # 3. recalculated
    assert misses(c, STATS) == 2
    assert after["total_bookings"] == before["total_bookings"] + 1
    assert after["by_status"]["pending"] == before["by_status"]["pending"] + 1


async def test_create_booking_invalidates_that_days_availability(
    cache_client: httpx.AsyncClient,
) -> None:
    c = cache_client
    day = future(9).isoformat()
    primed = await availability(c, day)
    await availability(c, day)
    assert (misses(c, AVAILABILITY), hits(c, AVAILABILITY)) == (1, 1)

    await create(c, event_date=day)

    after = await availability(c, day)
    assert misses(c, AVAILABILITY) == 2
    assert after["remaining"] == primed["remaining"] - 1  # type: ignore[operator]


@pytest.mark.parametrize("action", ["confirm", "cancel"])
async def test_confirm_and_cancel_invalidate_stats_and_the_day(
    cache_client: httpx.AsyncClient, action: str
) -> None:
    c = cache_client
    day = future(11).isoformat()
    booking = await create(c, event_date=day, time_slot="21:00")
    stats_before = (await c.get("/api/stats")).json()
    day_before = await availability(c, day)
    stats_misses, day_misses = misses(c, STATS), misses(c, AVAILABILITY)

    response = await c.post(f"/api/bookings/{booking['id']}/{action}")
    assert response.status_code == 200

    stats_after = (await c.get("/api/stats")).json()
    day_after = await availability(c, day)
    assert misses(c, STATS) == stats_misses + 1
    assert misses(c, AVAILABILITY) == day_misses + 1
    slot_before = {s["time_slot"]: s for s in day_before["slots"]}["21:00"]  # type: ignore[attr-defined]
    slot_after = {s["time_slot"]: s for s in day_after["slots"]}["21:00"]  # type: ignore[attr-defined]
    if action == "confirm":
        assert stats_after["by_status"]["confirmed"] == stats_before["by_status"]["confirmed"] + 1
        assert (slot_after["pending"], slot_after["confirmed"]) == (0, 1)
        assert slot_after["remaining"] == slot_before["remaining"]
    else:
        assert stats_after["by_status"]["cancelled"] == stats_before["by_status"]["cancelled"] + 1
        assert slot_after["remaining"] == slot_before["remaining"] + 1  # the chef is free again


async def test_a_booking_on_another_date_leaves_this_date_cached(
    cache_client: httpx.AsyncClient,
) -> None:
    c = cache_client
    this_day, other_day = future(14).isoformat(), future(15).isoformat()
    await availability(c, this_day)
    await availability(c, other_day)
    assert misses(c, AVAILABILITY) == 2

    await create(c, event_date=other_day)

    await availability(c, this_day)
    assert misses(c, AVAILABILITY) == 2  # still cached: a hit
    await availability(c, other_day)
    assert misses(c, AVAILABILITY) == 3  # its own day was recomputed


async def test_a_range_recomputes_only_the_changed_day(cache_client: httpx.AsyncClient) -> None:
    c = cache_client
    params = {"start": future(20).isoformat(), "end": future(26).isoformat()}
    assert (await c.get("/api/availability", params=params)).status_code == 200
    assert misses(c, AVAILABILITY) == 7
    await create(c, event_date=future(23).isoformat())
    days = (await c.get("/api/availability", params=params)).json()["days"]
    assert misses(c, AVAILABILITY) == 8
    assert {d["date"]: d["remaining"] for d in days}[future(23).isoformat()] == 11


async def test_failed_writes_invalidate_nothing(cache_client: httpx.AsyncClient) -> None:
    c = cache_client
    day = future(30).isoformat()
    booking = await create(c, event_date=day, time_slot="12:00")
    await c.post(f"/api/bookings/{booking['id']}/cancel")
    await c.get("/api/stats")
    await availability(c, day)
    stats_misses, day_misses = misses(c, STATS), misses(c, AVAILABILITY)

    assert (await c.post(f"/api/bookings/{booking['id']}/cancel")).status_code == 409
    assert (await c.post("/api/bookings/424242/confirm")).status_code == 404
    bad = await c.post("/api/bookings", json=booking_payload(event_date=day, guests=0))
    assert bad.status_code == 422

    await c.get("/api/stats")
    await availability(c, day)
    assert (misses(c, STATS), misses(c, AVAILABILITY)) == (stats_misses, day_misses)


async def test_broad_mode_reproduces_the_audited_original(
    sqlite_url: str, cache_url: str, make_settings: Callable[..., Settings]
) -> None:
    """invalidation=broad: `booking:*`, so a booking on another date evicts this one too."""
    async with running_app(make_settings(sqlite_url, cache_url, invalidation="broad")) as (_, c):
        this_day, other_day = future(14).isoformat(), future(15).isoformat()
        await availability(c, this_day)
        await create(c, event_date=other_day)
        await availability(c, this_day)
        assert misses(c, AVAILABILITY) == 2  # recomputed although nothing changed
        patterns = [item["pattern"] for item in app_state(c).cache.recent_invalidations()]
        assert patterns[0] == "booking:*"


async def test_granular_mode_invalidates_the_two_recommended_patterns(
    cache_client: httpx.AsyncClient,
) -> None:
    day = future(16)
    await create(cache_client, event_date=day.isoformat())
    patterns = {item["pattern"] for item in app_state(cache_client).cache.recent_invalidations()}
    assert f"booking:availability:{day.isoformat()}:*" in patterns
    assert "booking:stats:*" in patterns
    assert "booking:*" not in patterns


async def test_the_request_log_carries_the_cache_outcome(
    cache_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="myhibachi.access")
    await cache_client.get("/api/stats")
    await cache_client.get("/api/stats")
    await cache_client.get("/healthz")
    records = [r for r in caplog.records if r.name == "myhibachi.access"]
    assert [r.__dict__["cache"] for r in records] == ["miss", "hit", "none"]
    assert records[1].__dict__["cache_reads"] == {STATS: {"hit": 1, "miss": 0}}
    assert records[0].__dict__["status"] == 200
    assert records[0].__dict__["route"] == "/api/stats"


async def test_the_service_works_with_the_cache_down(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A cache that cannot be reached degrades /healthz but no request: reads go to the
    database, writes succeed, and nothing stale is served."""
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with running_app(make_settings(sqlite_url, down, cache_timeout=0.05)) as (_, c):
        before = (await c.get("/api/stats")).json()
        await create(c)
        after = (await c.get("/api/stats")).json()
        assert after["total_bookings"] == before["total_bookings"] + 1
        health = await c.get("/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        assert body["database"]["ok"] is True
        assert body["cache"]["reachable"] is False


async def test_the_dashboard_cache_panel_counts_invalidations_per_read(
    cache_client: httpx.AsyncClient,
) -> None:
    c = cache_client
    await c.get("/api/stats")
    await availability(c, future(3).isoformat())
    await create(c, event_date=future(3).isoformat())
    await create(c, event_date=future(4).isoformat())
    page = (await c.get("/")).text
    rows = dict(re.findall(r"<tr><td><code>([^<]+)</code></td>((?:<td>[^<]*</td>\s*)+)</tr>", page))
    assert set(rows) == {STATS, AVAILABILITY}  # no row per invalidated day
    cells = {k: re.findall(r"<td>([^<]*)</td>", v) for k, v in rows.items()}
    assert cells[STATS][-1] == "2"  # two writes, two invalidations of booking:stats:*
    assert cells[AVAILABILITY][-1] == "2"  # one per day written
