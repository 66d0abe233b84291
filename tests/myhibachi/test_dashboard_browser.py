"""The dashboard in a real headless Chromium, against `myhibachi serve --demo` (uvicorn).

Drives Debian's chromium from the command line (--dump-dom, --screenshot): no Python driver.
Without Chromium the test is skipped, or fails when CI is true. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hibachi_support import booking_payload, live_server, run_chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with live_server(tmp_path) as base:
        yield base


def _stat(dom: str, name: str) -> str:
    match = re.search(rf'data-testid="stat-{name}">([^<]+)<', dom)
    assert match, f"stat-{name} not on the page"
    return match.group(1).strip()


def _remaining(dom: str, day: dt.date) -> int:
    match = re.search(rf'data-date="{day.isoformat()}" data-remaining="(\d+)"', dom)
    assert match, f"{day} not in the calendar"
    return int(match.group(1))


def test_dashboard_shows_stats_calendar_and_updates(server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    before = run_chromium(f"{server}/", "--dump-dom")
    assert "MyHibachi" in before
    assert 'data-testid="calendar"' in before
    assert len(re.findall(r"data-date=", before)) >= 28
    assert "booking:stats" in before  # the cache panel lists the prefix
    total, pending, next7 = (int(_stat(before, n)) for n in ("total", "pending", "next7"))
    assert total >= 150

    day = dt.date.today() + dt.timedelta(days=2)
    free_before = _remaining(before, day)
    slot = next(
        s["time_slot"]
        for s in httpx.get(f"{server}/api/availability", params={"date": day.isoformat()}).json()[
            "slots"
        ]
        if s["remaining"] > 0
    )
    created = httpx.post(
        f"{server}/api/bookings",
        json=booking_payload(event_date=day.isoformat(), time_slot=slot),
        timeout=10,
    )
    assert created.status_code == 201, created.text

    after = run_chromium(f"{server}/", "--dump-dom")
    assert int(_stat(after, "total")) == total + 1
    assert int(_stat(after, "pending")) == pending + 1
    assert int(_stat(after, "next7")) == next7 + 1
    assert _remaining(after, day) == free_before - 1
    assert re.search(r"booking:availability:[0-9-]+:\*", after)  # a recent invalidation

    desktop = ARTIFACTS / "dashboard.png"
    phone = ARTIFACTS / "dashboard-phone.png"
    for path, size in ((desktop, "1280,1900"), (phone, "390,2400")):
        path.unlink(missing_ok=True)
        run_chromium(
            f"{server}/", f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars"
        )
        assert path.exists()
        assert path.stat().st_size > 10_000
