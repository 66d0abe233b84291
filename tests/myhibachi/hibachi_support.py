"""Helpers shared by the myhibachi tests (a module, so tests can import them by name)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from myhibachi.api import create_app
from myhibachi.api.state import AppState
from myhibachi.db import Database
from myhibachi.models import ACTIVE_STATUSES, Booking
from myhibachi.settings import Settings


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan run, and an httpx client over ASGITransport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://myhibachi.test") as c:
            yield app, c


def app_state(c: httpx.AsyncClient) -> AppState:
    transport = c._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    state = app.state.myhibachi
    assert isinstance(state, AppState)
    return state


Poster = Callable[..., Awaitable[httpx.Response]]

_NAMES = itertools.count(1)


def future(days: int) -> dt.date:
    return dt.date.today() + dt.timedelta(days=days)


def booking_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_NAMES)
    payload: dict[str, Any] = {
        "customer_name": f"Test Customer {n}",
        "email": f"customer{n}@example.com",
        "phone": "+1 415 555 0100",
        "event_date": future(10).isoformat(),
        "time_slot": "18:00",
        "guests": 12,
        "address": "1 Market St, San Francisco, CA",
    }
    payload.update(overrides)
    return payload


async def active_count(db: Database, day: dt.date, slot: str) -> int:
    """Pending or confirmed bookings of one slot, straight from the database."""
    async with db.read_session() as session:
        n = await session.scalar(
            select(func.count(Booking.id)).where(
                Booking.event_date == day,
                Booking.time_slot == slot,
                Booking.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
    return int(n or 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(workdir: Path, *args: str, bookings: int = 150) -> Iterator[str]:
    """``myhibachi serve --demo`` under uvicorn on a free port with its own SQLite file;
    yields the base URL once /healthz answers, stops the server (SIGINT) afterwards."""
    port = free_port()
    log_path = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FRESHCACHE_URL"}}
    argv = [
        sys.executable, "-m", "myhibachi", "serve", "--demo", "--port", str(port),
        "--bookings", str(bookings),
        "--database-url", f"sqlite+aiosqlite:///{workdir}/live.sqlite3", *args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy in 60 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
