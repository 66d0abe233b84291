"""GET / : today's stats, an availability calendar for the next weeks, the cache panel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from myhibachi.api.state import AppState, get_state
from myhibachi.observability import note_read
from myhibachi.schemas import DashboardStats, DayAvailability
from myhibachi.services.bookings import STATS_PREFIX

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("myhibachi.web", "templates"),
        autoescape=select_autoescape(["html"]),
    )
)
State = Annotated[AppState, Depends(get_state)]


@dataclass(frozen=True)
class CalendarDay:
    date: dt.date
    availability: DayAvailability | None  # None: outside the window shown

    @property
    def level(self) -> str:
        if self.availability is None:
            return "off"
        if self.availability.remaining == 0:
            return "full"
        return "low" if self.availability.remaining * 3 <= self.availability.capacity else "open"


def _weeks(today: dt.date, days: dict[dt.date, DayAvailability]) -> list[list[CalendarDay]]:
    """Monday-first weeks covering every day in ``days``."""
    first = today - dt.timedelta(days=today.weekday())
    last = max(days)
    weeks = []
    while first <= last:
        weeks.append(
            [CalendarDay(d, days.get(d)) for d in (first + dt.timedelta(i) for i in range(7))]
        )
        first += dt.timedelta(days=7)
    return weeks


def _covers(label: str, template: str) -> bool:
    """Does an invalidation recorded under ``label`` (``booking``, ``booking:stats``,
    ``booking:availability:2025-10-11``) reach entries of the read prefix ``template``
    (``booking:availability:{event_date}``)? A filled segment matches a template field."""
    have, want = label.split(":"), template.split(":")
    return len(have) <= len(want) and all(
        h == w or (w.startswith("{") and w.endswith("}")) for h, w in zip(have, want, strict=False)
    )


def _cache_panel(state: AppState) -> dict[str, Any]:
    """One row per cached read prefix. freshcache records an invalidation under the label of
    its pattern (``booking:availability:2025-10-11``), so a row sums those that reach it."""
    stats = state.cache.stats()
    invalidations = {label: sum(s.invalidations.values()) for label, s in stats.items()}
    rows = []
    for prefix, s in sorted(stats.items()):
        if s.hits + s.misses + s.stale == 0:
            continue  # a label that only received invalidations
        rows.append(
            {
                "prefix": prefix,
                "hits": s.hits,
                "near_hits": s.near_hits,
                "misses": s.misses,
                "stale": s.stale,
                "hit_ratio": s.hit_ratio,
                "invalidations": sum(
                    n for label, n in invalidations.items() if _covers(label, prefix)
                ),
            }
        )
    recent = [
        {
            "at": dt.datetime.fromtimestamp(item["at"], dt.UTC).strftime("%H:%M:%S"),
            "pattern": item["pattern"],
            "kind": item["kind"],
        }
        for item in list(state.cache.recent_invalidations())[:12]
    ]
    return {"rows": rows, "recent": recent, "health": state.cache.health()}


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, state: State) -> HTMLResponse:
    today = state.service.today()
    note_read(STATS_PREFIX)
    stats: DashboardStats = await state.service.get_dashboard_stats()
    window = await state.service.get_availability_range(
        today + dt.timedelta(days=1), today + dt.timedelta(days=state.settings.calendar_days)
    )
    days = {d.date: d for d in window.days}
    peak = max((d.bookings for d in stats.bookings_per_day), default=0)
    context = {
        "stats": stats,
        "today": today,
        "weeks": _weeks(today, days),
        "settings": state.settings,
        "cache": _cache_panel(state),
        "peak": max(peak, 1),
    }
    return templates.TemplateResponse(request, "dashboard.html", context)
