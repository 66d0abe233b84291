"""A small booking API whose reads are cached routes and whose writes invalidate them.

``Database`` is the data: a version per day that writes bump, and a read that can be held
right after it loaded (to drive the consistency race with events, never with sleeps).
"""

# No "from __future__ import annotations": the routes are defined inside build_app(), and
# FastAPI (like freshcache) evaluates string annotations in the module, where get_db is not.

import asyncio
import dataclasses
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from freshcache import Cache
from freshcache.contrib.fastapi import cached_route


class Database:
    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.loaded = asyncio.Event()

    def hold(self) -> asyncio.Event:
        """The next load stops after reading, until the returned event is set."""
        self.gate = asyncio.Event()
        self.loaded = asyncio.Event()
        return self.gate

    async def load(self, day: str) -> int:
        seen = self.versions.get(day, 1)  # the row is read here
        self.loads += 1
        self.loaded.set()
        gate, self.gate = self.gate, None
        if gate is not None:
            await gate.wait()
        return seen


class Availability(BaseModel):
    day: str
    version: int


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str


TOKENS = {"alice-token": User(1, "alice"), "bob-token": User(2, "bob")}
bearer = HTTPBearer()


def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Security(bearer)],
) -> User:
    user = TOKENS.get(credentials.credentials)
    if user is None:
        raise HTTPException(401, "unknown token")
    return user


def build_app(cache: Cache, db: Database, *, no_cache_refreshes: bool = True) -> FastAPI:
    app = FastAPI()

    def get_db() -> Database:
        return db

    @app.get("/availability/{day}")
    @cached_route(
        ttl=60,
        key_prefix="booking:availability:{day}",
        exclude=("database",),
        cache=cache,
        no_cache_refreshes=no_cache_refreshes,
    )
    async def availability(
        day: str, database: Annotated[Database, Depends(get_db)]
    ) -> Availability:
        return Availability(day=day, version=await database.load(day))

    @cache.invalidate_cache("booking:availability:{day}:*")
    async def book(day: str) -> None:
        """The service function: the write commits, then its day is invalidated."""
        db.versions[day] = db.versions.get(day, 1) + 1

    @app.post("/bookings/{day}")
    async def create_booking(day: str) -> dict[str, str]:
        await book(day)
        return {"booked": day}

    @app.post("/days/{day}/close")
    @cache.invalidate_cache("booking:availability:{day}:*")  # on the write endpoint itself
    async def close_day(day: str) -> dict[str, str]:
        db.versions[day] = db.versions.get(day, 1) + 100
        return {"closed": day}

    @app.get("/me/bookings")
    @cached_route(
        ttl=60, key_prefix="booking:mine", per_user="user.id", exclude=("user",), cache=cache
    )
    async def my_bookings(user: Annotated[User, Depends(current_user)]) -> dict[str, object]:
        db.loads += 1
        return {"user": user.name, "bookings": [user.id * 10]}

    @app.get("/missing/{day}")
    @cached_route(ttl=60, key_prefix="booking:missing", cache=cache)
    async def missing(day: str) -> JSONResponse:
        db.loads += 1
        return JSONResponse({"detail": f"no {day}"}, status_code=404)

    @app.get("/closed/{day}")
    @cached_route(ttl=60, key_prefix="booking:closed", cache=cache)
    async def closed(day: str) -> dict[str, str]:
        db.loads += 1
        raise HTTPException(409, f"{day} is closed")

    @app.get("/sync/{day}")
    @cached_route(ttl=60, key_prefix="booking:availability:{day}", cache=cache)
    def sync_availability(day: str) -> dict[str, object]:
        db.loads += 1
        return {"day": day, "version": db.versions.get(day, 1)}

    return app


def http_client(app: FastAPI) -> httpx.AsyncClient:
    """A client that sends real HTTP requests into ``app`` (httpx's ASGI transport)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
