"""Per-request JSON access log (with the cache outcome) and Prometheus HTTP metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from myhibachi.api.error_bodies import shorten
from myhibachi.observability import collect

log = logging.getLogger("myhibachi.access")

MAX_LOGGED_PATH = 300  # characters of a request path in the access log


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "myhibachi_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "myhibachi_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            registry=self.registry,
        )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with collect() as outcomes:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = _route_template(scope)
                # The server bounds a request line, not to a log-friendly size.
                path = shorten(scope["path"], MAX_LOGGED_PATH)
                self.metrics.requests.labels(scope["method"], route, str(status)).inc()
                self.metrics.latency.labels(route).observe(elapsed)
                fields: dict[str, Any] = {
                    "event": "request",
                    "method": scope["method"],
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "cache": outcomes.outcome(),
                    "cache_reads": outcomes.by_prefix(),
                }
                log.info("%s %s %s", scope["method"], path, status, extra=fields)
