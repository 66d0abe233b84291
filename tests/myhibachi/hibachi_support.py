"""Helpers shared by the myhibachi tests (a module, so tests can import them by name)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
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


@dataclass(frozen=True)
class LiveServer:
    base: str
    host: str
    port: int
    pid: int

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident set size so far (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")


@contextmanager
def live_process(
    workdir: Path, *args: str, bookings: int = 150, env: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """``myhibachi serve --demo`` under uvicorn on a free port with its own SQLite file and
    ``env`` added to the environment; yields it once /healthz answers, stops the server
    (SIGINT) afterwards."""
    port = free_port()
    log_path = workdir / "server.log"
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FRESHCACHE_URL"}}
    environ.update(env or {})
    argv = [
        sys.executable, "-m", "myhibachi", "serve", "--demo", "--port", str(port),
        "--bookings", str(bookings),
        "--database-url", f"sqlite+aiosqlite:///{workdir}/live.sqlite3", *args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=workdir
        )
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
        yield LiveServer(base=base, host="127.0.0.1", port=port, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def live_server(workdir: Path, *args: str, bookings: int = 150) -> Iterator[str]:
    """:func:`live_process`, yielding only its base URL."""
    with live_process(workdir, *args, bookings=bookings) as server:
        yield server.base


# ------------------------------------------------------------------------------ Chromium

# Chromium with the network closed: every host name fails to resolve except 127.0.0.1, and
# what is not loopback goes to a proxy on a port where nothing listens. Loopback is never
# proxied, so the service under test stays reachable.
OFFLINE = (
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


def chromium_path() -> str:
    """Debian's chromium; without it the test is skipped, or fails when CI is true."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.path.exists("/usr/bin/chromium"):
        found = "/usr/bin/chromium"
    if found is None:
        message = "headless Chromium not found (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"{message}; CI requires it", pytrace=False)
        pytest.skip(message)
    return found


def run_chromium(url: str, *extra: str) -> str:
    """Headless Chromium on ``url`` with a fresh profile; returns its stdout."""
    with tempfile.TemporaryDirectory(prefix="myhibachi-chromium-") as profile:
        argv = [
            chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            *extra, url,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
