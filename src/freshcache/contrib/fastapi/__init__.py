"""FastAPI integration: the cache's lifespan, and response caching on routes.

    from fastapi import Depends, FastAPI
    from freshcache import invalidate_cache
    from freshcache.contrib.fastapi import cache_lifespan, cached_route

    app = FastAPI(lifespan=cache_lifespan("redis://127.0.0.1:6379/0", namespace="myhibachi"))

    @app.get("/bookings/{booking_id}")
    @cached_route(ttl=60, key_prefix="booking:detail", exclude=("db",))
    async def get_booking(booking_id: int, db: Session = Depends(get_db)) -> BookingOut: ...

    @app.post("/bookings")
    @invalidate_cache("booking:*")        # drops the route's entries: same key scheme
    async def create_booking(...): ...

Needs the ``fastapi`` extra: ``pip install 'freshcache[fastapi]'``.
"""

from freshcache.contrib.fastapi.lifespan import cache_lifespan
from freshcache.contrib.fastapi.route import RouteCacheError, cached_route
from freshcache.contrib.fastapi.stored import StoredResponse

__all__ = ["RouteCacheError", "StoredResponse", "cache_lifespan", "cached_route"]
