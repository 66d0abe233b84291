"""What the app holds for its lifetime, and the FastAPI dependency that hands it out."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from freshcache import Cache
from myhibachi.db import Database
from myhibachi.services.bookings import BookingService
from myhibachi.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    db: Database
    cache: Cache
    service: BookingService


def get_state(request: Request) -> AppState:
    state = request.app.state.myhibachi
    assert isinstance(state, AppState), "the app's lifespan has not run"
    return state
