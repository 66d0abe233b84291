"""The HTTP edge over ASGI (httpx ASGITransport against the real app): the request-body cap,
small 422 bodies, strict JSON types, 415 for a body that is not JSON, the offline docs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hibachi_support import Poster, app_state, booking_payload, future, running_app

from myhibachi.api.body_limit import BodySizeLimit
from myhibachi.settings import Settings

MB = 1024 * 1024
DEFAULT_LIMIT = 64 * 1024
STATS = "booking:stats"
AVAILABILITY = "booking:availability:{event_date}"


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text[:500]
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


def _fields(response: httpx.Response) -> set[str]:
    return {str(item["loc"][-1]) for item in _errors(response)}


def _json(payload: object, *, pad_to: int | None = None) -> bytes:
    body = json.dumps(payload).encode()
    if pad_to is not None:
        body += b" " * (pad_to - len(body))  # whitespace after the value is still JSON
    return body


async def _post_json(client: httpx.AsyncClient, body: bytes | Any) -> httpx.Response:
    return await client.post(
        "/api/bookings", content=body, headers={"content-type": "application/json"}
    )


@pytest.fixture
def app_with(sqlite_url: str, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """``async with app_with(max_body_bytes=...) as (app, client)``: the app on SQLite with
    settings overridden."""

    def make(**overrides: Any) -> Any:
        return running_app(make_settings(sqlite_url, **overrides))

    return make


# ------------------------------------------------------------------------ the body cap


def test_the_default_limit_is_64_kib() -> None:
    assert Settings().max_body_bytes == DEFAULT_LIMIT


async def test_a_body_at_the_limit_is_read_one_byte_more_is_413(
    client: httpx.AsyncClient,
) -> None:
    at_limit = _json(booking_payload(), pad_to=DEFAULT_LIMIT)
    assert len(at_limit) == DEFAULT_LIMIT
    accepted = await _post_json(client, at_limit)
    assert accepted.status_code == 201, accepted.text

    refused = await _post_json(client, _json(booking_payload(), pad_to=DEFAULT_LIMIT + 1))
    assert refused.status_code == 413
    assert refused.json() == {
        "detail": f"request body too large: the limit is {DEFAULT_LIMIT} bytes"
    }


async def test_a_declared_length_over_the_limit_is_refused_unread(
    app_with: Callable[..., Any],
) -> None:
    """Content-Length: 50 MB and no body at all: the 413 comes without a single read."""
    async with app_with() as (app, _client):
        reads = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal reads
            reads += 1  # an app that reads gets an empty body, and the test fails below
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/api/bookings",
            "raw_path": b"/api/bookings", "query_string": b"", "root_path": "",
            "headers": [
                (b"host", b"myhibachi.test"), (b"content-type", b"application/json"),
                (b"content-length", str(50 * MB).encode()),
            ],
            "client": ("127.0.0.1", 50000), "server": ("myhibachi.test", 80),
        }  # fmt: skip
        await app(scope, receive, send)
    assert reads == 0
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert json.loads(body) == {
        "detail": f"request body too large: the limit is {DEFAULT_LIMIT} bytes"
    }


async def test_a_streamed_body_is_counted_and_refused_past_the_limit(
    client: httpx.AsyncClient,
) -> None:
    """A chunked body (no Content-Length) of 40 MB: refused once the count passes the limit;
    the app pulled one chunk past it, not the rest."""
    chunk = 4096
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):
            pulled += 1
            yield b" " * chunk

    refused = await _post_json(client, chunks())
    assert refused.status_code == 413
    assert "limit is 65536 bytes" in refused.json()["detail"]
    assert pulled == DEFAULT_LIMIT // chunk + 1


async def test_the_limit_is_a_setting(app_with: Callable[..., Any]) -> None:
    async with app_with(max_body_bytes=2048) as (_app, client):
        assert (await _post_json(client, _json(booking_payload()))).status_code == 201
        assert (await _post_json(client, _json(booking_payload(), pad_to=2049))).status_code == 413


async def test_the_limit_covers_every_route(client: httpx.AsyncClient) -> None:
    """A large body is refused before routing: also on a route that takes no body."""
    response = await client.post(
        "/api/bookings/1/confirm",
        content=b"x" * (DEFAULT_LIMIT + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_the_cap_answers_for_an_app_that_reads_the_body_itself() -> None:
    """Outside FastAPI's handlers (a mounted ASGI app), the middleware answers the 413."""

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 512

    app = BodySizeLimit(reader, max_bytes=1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/", content=chunks(2))).text == "1024"
        refused = await client.post("/", content=chunks(3))
    assert refused.status_code == 413
    assert refused.json() == {"detail": "request body too large: the limit is 1024 bytes"}


async def test_the_413_is_in_the_access_metrics(client: httpx.AsyncClient) -> None:
    await _post_json(client, b" " * (DEFAULT_LIMIT + 1))
    metrics = (await client.get("/metrics")).text
    assert re.search(r'myhibachi_http_requests_total\{[^}]*status="413"[^}]*\} 1\.0', metrics)


# ------------------------------------------------------------------------ small 422s


async def test_a_1_mb_name_comes_back_as_a_small_error(app_with: Callable[..., Any]) -> None:
    name = "N" * MB
    async with app_with(max_body_bytes=4 * MB) as (_app, client):
        response = await client.post("/api/bookings", json=booking_payload(customer_name=name))
    errors = _errors(response)
    assert len(response.content) < 1000, len(response.content)
    assert errors == [
        {
            "loc": ["body", "customer_name"],
            "msg": "String should have at most 120 characters",
            "type": "string_too_long",
            "ctx": {"max_length": 120},
        }
    ]


async def test_missing_fields_do_not_echo_the_body(client: httpx.AsyncClient) -> None:
    """A missing field's pydantic error carries the whole body as its input: seven missing
    fields and an unknown one used to send the body back eight times."""
    response = await client.post("/api/bookings", json={"note": "x" * 60_000})
    errors = _errors(response)
    assert len(response.content) < 2000, len(response.content)
    assert "xxxxxxxxxx" not in response.text
    assert all("input" not in error for error in errors)
    missing = {error["loc"][-1] for error in errors if error["type"] == "missing"}
    assert missing == {
        "customer_name", "email", "phone", "event_date", "time_slot", "guests", "address",
    }  # fmt: skip
    assert {
        "loc": ["body", "note"],
        "msg": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    } in errors


async def test_errors_are_bounded_in_count(app_with: Callable[..., Any]) -> None:
    payload = booking_payload() | {f"extra{i}": 0 for i in range(3000)}
    async with app_with(max_body_bytes=MB) as (_app, client):
        default = _errors(await client.post("/api/bookings", json=payload))
    assert len(default) == 21
    assert default[-1] == {
        "loc": ["body"],
        "msg": "2980 more errors not listed",
        "type": "too_many_errors",
    }
    async with app_with(max_body_bytes=MB, max_error_entries=3) as (_app, client):
        few = _errors(await client.post("/api/bookings", json=payload))
    assert [e["type"] for e in few] == ["extra_forbidden"] * 3 + ["too_many_errors"]
    assert few[-1]["msg"] == "2997 more errors not listed"


async def test_a_long_key_is_cut_short_in_the_location(client: httpx.AsyncClient) -> None:
    key = "k" * 50_000
    response = await client.post("/api/bookings", json=booking_payload() | {key: 1})
    (error,) = _errors(response)
    assert error["type"] == "extra_forbidden"
    assert error["loc"][0] == "body"
    assert error["loc"][1].startswith("k" * 80)
    assert error["loc"][1].endswith("(50000 characters)")
    assert len(response.content) < 500


async def test_broken_json_is_a_small_422(client: httpx.AsyncClient) -> None:
    response = await _post_json(client, b'{"customer_name": "' + b"x" * 60_000)
    (error,) = _errors(response)
    assert error["type"] == "json_invalid"
    assert error["loc"][0] == "body"
    assert len(response.content) < 500


async def test_a_huge_query_value_is_a_small_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/bookings", params={"status": "s" * 60_000})
    (error,) = _errors(response)
    assert error["loc"] == ["query", "status"]
    assert len(response.content) < 500


async def test_a_long_path_is_logged_short(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="myhibachi.access")
    assert (await client.get("/" + "p" * 50_000)).status_code == 404
    (record,) = [r for r in caplog.records if r.name == "myhibachi.access"]
    assert len(record.getMessage()) < 400
    assert record.__dict__["path"].endswith("(50001 characters)")


# ------------------------------------------------------------------------ strict types


@pytest.mark.parametrize(
    "guests", [True, False, "12", "1", 12.0, 1.5, None, [12], {"n": 12}, "twelve"]
)
async def test_guests_must_be_a_json_integer(book: Poster, guests: object) -> None:
    response = await book(guests=guests)
    assert _fields(response) == {"guests"}
    assert "input" not in response.text


@pytest.mark.parametrize("guests", [1, 100])
async def test_guests_from_1_to_100_are_booked(book: Poster, guests: int) -> None:
    response = await book(guests=guests)
    assert response.status_code == 201, response.text
    assert response.json()["guests"] == guests


# Each would name a date inside the booking window if it were taken loosely.
_IN_WINDOW = future(10)
_MIDNIGHT_UTC = int(dt.datetime.combine(_IN_WINDOW, dt.time(), tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    "event_date",
    [
        _MIDNIGHT_UTC,  # a Unix timestamp at midnight UTC: a lax date takes it
        _MIDNIGHT_UTC + 3600,  # a timestamp that is not a whole day
        float(_MIDNIGHT_UTC),
        f"{_IN_WINDOW.isoformat()}T00:00:00",
        _IN_WINDOW.isoformat().replace("-", ""),
        True,
        None,
    ],
)
async def test_event_date_must_be_an_iso_date_string(book: Poster, event_date: object) -> None:
    assert _fields(await book(event_date=event_date)) == {"event_date"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_name", 12345),
        ("email", 12345),
        ("phone", 4155550100),
        ("time_slot", 1800),
        ("address", True),
        ("customer_name", ["Ada"]),
    ],
)
async def test_text_fields_must_be_json_strings(book: Poster, field: str, value: object) -> None:
    assert _fields(await book(**{field: value})) == {field}


# ------------------------------------------------------------------------ content types


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"content-type": "text/plain"}, None),
        ({"content-type": "application/x-www-form-urlencoded"}, b"customer_name=Ada"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"--x--\r\n"),
        ({"content-type": "application/xml"}, b"<booking/>"),
        ({"content-type": "json"}, None),
        ({}, None),
    ],
)
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, headers: dict[str, str], content: bytes | None
) -> None:
    body = content if content is not None else json.dumps(booking_payload()).encode()
    response = await client.post("/api/bookings", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]


async def test_a_415_does_not_echo_a_long_content_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/bookings", content=b"{}", headers={"content-type": "text/" + "p" * 5000}
    )
    assert response.status_code == 415
    assert len(response.content) < 300


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.myhibachi+json",
    ],
)
async def test_json_media_types_are_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/api/bookings",
        content=json.dumps(booking_payload()).encode(),
        headers={"content-type": content_type},
    )
    assert response.status_code == 201, response.text


async def test_routes_without_a_body_ignore_the_content_type(
    client: httpx.AsyncClient, book: Poster
) -> None:
    booking_id = (await book(event_date=future(3).isoformat())).json()["id"]
    response = await client.post(
        f"/api/bookings/{booking_id}/confirm", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200


# ------------------------------------------------------------------------ docs


async def test_docs_and_redoc_are_served_from_the_app(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/docs/assets/"), asset
            served = await client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset


async def test_the_schema_documents_413_and_415(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/api/bookings"]["post"]["responses"]
    assert {"201", "409", "413", "415", "422"} <= set(responses)


# ------------------------------------------------------------------------ nothing changes


async def test_refused_requests_write_and_invalidate_nothing(
    cache_client: httpx.AsyncClient,
) -> None:
    """On memory:// and a real Redis: a 413, a 415 and 422s leave the data and the cached
    reads alone (the next reads are hits with the same values)."""
    c = cache_client
    day = future(6).isoformat()
    stats = (await c.get("/api/stats")).json()
    slots = (await c.get("/api/availability", params={"date": day})).json()
    state = app_state(c).cache.stats()
    hits_before = {prefix: state[prefix].hits for prefix in (STATS, AVAILABILITY)}

    big = _json(booking_payload(event_date=day), pad_to=DEFAULT_LIMIT + 1)
    assert (await _post_json(c, big)).status_code == 413
    plain = json.dumps(booking_payload(event_date=day))
    text = await c.post("/api/bookings", content=plain, headers={"content-type": "text/plain"})
    assert text.status_code == 415
    assert (await c.post("/api/bookings", json=booking_payload(guests=True))).status_code == 422
    assert (await c.post("/api/bookings", json=booking_payload(event_date=1))).status_code == 422

    assert (await c.get("/api/stats")).json() == stats
    assert (await c.get("/api/availability", params={"date": day})).json() == slots
    state = app_state(c).cache.stats()
    assert {prefix: state[prefix].hits for prefix in (STATS, AVAILABILITY)} == {
        prefix: hits + 1 for prefix, hits in hits_before.items()
    }
    assert (await c.get("/api/bookings", params={"date": day})).json()["total"] == 0
