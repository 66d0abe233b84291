"""The booking API end to end, on SQLite and on PostgreSQL (the `client` fixture)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest
from hibachi_support import Poster, booking_payload, future


def _field_errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {item["loc"][-1]: item["msg"] for item in response.json()["detail"]}


async def test_create_get_confirm_cancel(client: httpx.AsyncClient, book: Poster) -> None:
    day = future(12)
    created = await book(event_date=day.isoformat(), guests=4)
    assert created.status_code == 201, created.text
    booking = created.json()
    assert booking["status"] == "pending"
    assert booking["event_date"] == day.isoformat()
    assert booking["chef_seat"] == 1
    assert Decimal(booking["price"]) >= Decimal("550.00")  # the minimum applies to 4 guests

    fetched = await client.get(f"/api/bookings/{booking['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == booking

    confirmed = await client.post(f"/api/bookings/{booking['id']}/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"

    cancelled = await client.post(f"/api/bookings/{booking['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


async def test_illegal_transitions_are_409(client: httpx.AsyncClient, book: Poster) -> None:
    booking_id = (await book()).json()["id"]
    assert (await client.post(f"/api/bookings/{booking_id}/cancel")).status_code == 200
    again = await client.post(f"/api/bookings/{booking_id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert (await client.post(f"/api/bookings/{booking_id}/confirm")).status_code == 409

    other = (await book()).json()["id"]
    assert (await client.post(f"/api/bookings/{other}/confirm")).status_code == 200
    assert (await client.post(f"/api/bookings/{other}/confirm")).status_code == 409


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/bookings/999999"),
        ("POST", "/api/bookings/999999/confirm"),
        ("POST", "/api/bookings/999999/cancel"),
    ],
)
async def test_unknown_ids_are_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_date": dt.date.today().isoformat()}, "event_date"),
        ({"event_date": future(-3).isoformat()}, "event_date"),
        ({"event_date": future(366).isoformat()}, "event_date"),
        ({"event_date": "not-a-date"}, "event_date"),
        ({"guests": 0}, "guests"),
        ({"guests": 101}, "guests"),
        ({"guests": "many"}, "guests"),
        ({"time_slot": "13:37"}, "time_slot"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "call me"}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"customer_name": ""}, "customer_name"),
        ({"customer_name": "nul\u0000byte"}, "customer_name"),
        ({"address": "x" * 301}, "address"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(
    book: Poster, overrides: dict[str, object], field: str
) -> None:
    errors = _field_errors(await book(**overrides))
    assert field in errors, errors


async def test_the_last_day_of_the_window_is_bookable(book: Poster) -> None:
    assert (await book(event_date=future(365).isoformat())).status_code == 201
    assert (await book(event_date=future(1).isoformat())).status_code == 201


async def test_missing_fields_and_bad_json_are_422(client: httpx.AsyncClient) -> None:
    payload = booking_payload()
    del payload["email"]
    assert "email" in _field_errors(await client.post("/api/bookings", json=payload))
    bad = await client.post(
        "/api/bookings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422


async def test_a_full_slot_is_409_and_a_cancel_frees_a_chef(
    client: httpx.AsyncClient, book: Poster
) -> None:
    day = future(20).isoformat()
    ids = []
    for seat in (1, 2, 3):  # three chefs per slot by default
        response = await book(event_date=day, time_slot="12:00")
        assert response.status_code == 201
        assert response.json()["chef_seat"] == seat
        ids.append(response.json()["id"])
    full = await book(event_date=day, time_slot="12:00")
    assert full.status_code == 409
    assert "full" in full.json()["detail"]
    assert (await book(event_date=day, time_slot="15:00")).status_code == 201  # other slot

    assert (await client.post(f"/api/bookings/{ids[1]}/cancel")).status_code == 200
    again = await book(event_date=day, time_slot="12:00")
    assert again.status_code == 201
    assert again.json()["chef_seat"] == 2  # the freed chef


async def test_availability_for_a_day_and_a_range(client: httpx.AsyncClient, book: Poster) -> None:
    day = future(5)
    booking_id = (await book(event_date=day.isoformat(), time_slot="18:00")).json()["id"]
    await client.post(f"/api/bookings/{booking_id}/confirm")
    await book(event_date=day.isoformat(), time_slot="18:00")

    one = (await client.get("/api/availability", params={"date": day.isoformat()})).json()
    slots = {s["time_slot"]: s for s in one["slots"]}
    assert list(slots) == ["12:00", "15:00", "18:00", "21:00"]
    assert slots["18:00"] == {
        "time_slot": "18:00",
        "capacity": 3,
        "pending": 1,
        "confirmed": 1,
        "remaining": 1,
    }
    assert one["capacity"] == 12
    assert one["remaining"] == 10

    start, end = future(3), future(9)
    many = await client.get(
        "/api/availability", params={"start": start.isoformat(), "end": end.isoformat()}
    )
    assert many.status_code == 200
    days = many.json()["days"]
    assert [d["date"] for d in days] == [(start + dt.timedelta(i)).isoformat() for i in range(7)]
    assert {d["date"]: d["remaining"] for d in days}[day.isoformat()] == 10


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "date"),
        ({"start": future(1).isoformat()}, "end"),
        ({"start": future(10).isoformat(), "end": future(1).isoformat()}, "end"),
        ({"start": future(1).isoformat(), "end": future(63).isoformat()}, "end"),
        ({"date": "2025-13-01"}, "date"),
        ({"date": "0001-01-01"}, "date"),
        ({"date": "9999-12-31"}, "date"),
        ({"date": future(1).isoformat(), "start": future(1).isoformat()}, "date"),
    ],
)
async def test_availability_rejects_bad_queries(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/availability", params=params)
    assert field in _field_errors(response)


async def test_list_is_paginated_and_filtered(client: httpx.AsyncClient, book: Poster) -> None:
    day_a, day_b = future(7), future(8)
    ids = [
        (await book(event_date=day_a.isoformat(), time_slot=s)).json()["id"]
        for s in ("12:00", "15:00", "18:00")
    ]
    ids.append((await book(event_date=day_b.isoformat())).json()["id"])
    await client.post(f"/api/bookings/{ids[0]}/confirm")

    page1 = (await client.get("/api/bookings", params={"page_size": 3})).json()
    page2 = (await client.get("/api/bookings", params={"page_size": 3, "page": 2})).json()
    assert page1["total"] == page2["total"] == 4
    assert len(page1["items"]) == 3
    assert len(page2["items"]) == 1
    assert {b["id"] for b in page1["items"] + page2["items"]} == set(ids)

    by_date = (await client.get("/api/bookings", params={"date": day_a.isoformat()})).json()
    assert by_date["total"] == 3
    confirmed = (await client.get("/api/bookings", params={"status": "confirmed"})).json()
    assert [b["id"] for b in confirmed["items"]] == [ids[0]]
    both = await client.get(
        "/api/bookings", params={"status": "pending", "date": day_a.isoformat()}
    )
    assert both.json()["total"] == 2
    assert (await client.get("/api/bookings", params={"status": "lost"})).status_code == 422
    assert (await client.get("/api/bookings", params={"page": 0})).status_code == 422


async def test_stats_are_sql_aggregates(client: httpx.AsyncClient, book: Poster) -> None:
    empty = (await client.get("/api/stats")).json()
    assert empty["total_bookings"] == 0
    assert empty["average_guests"] == 0.0
    assert len(empty["bookings_per_day"]) == 30

    a = (await book(event_date=future(2).isoformat(), guests=10)).json()
    b = (await book(event_date=future(20).isoformat(), guests=20)).json()
    c = (await book(event_date=future(40).isoformat(), guests=30)).json()
    await client.post(f"/api/bookings/{a['id']}/confirm")
    await client.post(f"/api/bookings/{c['id']}/cancel")
    # Writes invalidated the cached stats: this read recomputes.
    stats = (await client.get("/api/stats")).json()
    assert stats["total_bookings"] == 3
    assert stats["by_status"] == {"pending": 1, "confirmed": 1, "cancelled": 1}
    assert stats["total_guests"] == 30  # active only
    assert stats["average_guests"] == 15.0
    assert Decimal(stats["confirmed_revenue"]) == Decimal(a["price"])
    assert stats["events_next_7_days"] == 1
    assert stats["events_next_30_days"] == 2
    per_day = {d["date"]: d for d in stats["bookings_per_day"]}
    assert per_day[future(2).isoformat()] == {
        "date": future(2).isoformat(),
        "bookings": 1,
        "guests": 10,
    }
    assert per_day[future(20).isoformat()]["bookings"] == 1
    assert sum(d["bookings"] for d in stats["bookings_per_day"]) == 2
    assert b["status"] == "pending"


async def test_healthz_docs_metrics_and_dashboard(client: httpx.AsyncClient, book: Poster) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["cache"]["breaker"] == "closed"

    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/bookings/{booking_id}/confirm" in schema["paths"]

    await book()
    await client.get("/api/stats")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'myhibachi_http_requests_total{method="POST",route="/api/bookings",status="201"}' in (
        metrics.text
    )
    assert "freshcache_misses_total{namespace=" in metrics.text
    assert 'prefix="booking:stats"' in metrics.text

    page = await client.get("/")
    assert page.status_code == 200
    assert 'data-testid="stat-total">1<' in page.text
    assert 'data-testid="calendar"' in page.text
    assert "booking:stats" in page.text  # the cache panel
    css = await client.get("/static/style.css")
    assert css.status_code == 200
