"""Launch myhibachi under uvicorn for bench_service.py (one worker, loopback only).

    python benchmarks/_serve.py PORT [--uncached]

Settings come from the environment (DATABASE_URL, FRESHCACHE_URL), as for the real service.
``--uncached`` makes every ``@cached`` call run its function directly (the service has no
switch for that; this is the "no cache" baseline, and only the benchmark does it).
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    port = int(sys.argv[1])
    if "--uncached" in sys.argv:
        from freshcache.cache import Cache

        async def call_through(spec: Any, args: Any, kwargs: Any) -> Any:
            return await spec.func(*args, **kwargs)

        def call_through_sync(spec: Any, args: Any, kwargs: Any) -> Any:
            return spec.func(*args, **kwargs)

        built = Cache.__init__

        def build_uncached(self: Cache, *args: Any, **kwargs: Any) -> None:
            built(self, *args, **kwargs)
            # The engine's read paths are chosen once, when it is built: replace them there.
            self.engine.call_async = call_through
            self.engine.call_sync = call_through_sync

        Cache.__init__ = build_uncached  # type: ignore[method-assign]
    import logging

    import uvicorn

    from myhibachi.api import create_app
    from myhibachi.settings import Settings

    logging.disable(logging.INFO)  # per-request log lines would cost more than the requests
    uvicorn.run(
        create_app(Settings()), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
