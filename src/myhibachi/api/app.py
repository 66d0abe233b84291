"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import freshcache
from myhibachi import __version__, migrate
from myhibachi.api import bookings, system
from myhibachi.api.body_limit import BodySizeLimit
from myhibachi.api.errors import install_error_handlers
from myhibachi.api.middleware import HttpMetrics, RequestLogMiddleware
from myhibachi.api.state import AppState
from myhibachi.db import Database
from myhibachi.seed import seed_demo
from myhibachi.services.bookings import BookingService
from myhibachi.settings import Settings, load_settings
from myhibachi.web import dashboard

log = logging.getLogger("myhibachi")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Its lifespan configures freshcache (the default cache, which the
    service's decorators bind to), opens the database, migrates it and, in demo mode,
    seeds it."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = freshcache.configure(
            url=settings.cache_url,
            namespace=settings.cache_namespace,
            timeout=settings.cache_timeout,
            near_lease=settings.cache_near_lease,
        )
        db = Database(settings.database_url)
        try:
            if settings.auto_migrate:
                await migrate.upgrade(db)
            if settings.demo and settings.demo_bookings:
                added = await seed_demo(db, settings, settings.demo_bookings)
                if added:
                    await cache.invalidate("booking:*")
                log.info("demo data ready", extra={"event": "seed", "added": added})
            service = BookingService(db, settings)
            app.state.myhibachi = AppState(settings=settings, db=db, cache=cache, service=service)
            log.info(
                "started",
                extra={
                    "event": "startup",
                    "database": db.engine.dialect.name,
                    "cache": cache.health().get("backend"),
                    "invalidation": settings.invalidation,
                },
            )
            yield
        finally:
            await db.dispose()
            await cache.aclose()

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc load their scripts and
    # styles from the fastapi-offline package, served by this app, instead of a CDN.
    app = FastAPIOffline(
        title="MyHibachi",
        version=__version__,
        summary="Hibachi catering bookings, with freshcache-cached stats and availability.",
        lifespan=lifespan,
        static_url="/docs/assets",
    )
    metrics = HttpMetrics()
    app.state.http_metrics = metrics
    # The last middleware added runs first: the access log sees the 413s of the body cap.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    install_error_handlers(app, max_error_entries=settings.max_error_entries)
    app.include_router(bookings.router)
    app.include_router(system.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app
