"""The backend contract suite runs on every backend and on both faces of each (sync, async).

``face`` is parametrised over (backend, face): a new backend is one more entry in
``BACKENDS``; every contract test then runs on it twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from contract_helpers import Face

from freshcache.backends import ConnectionOptions, open_backends

#: backend id -> the fixture that provides its URL, or a literal URL.
BACKENDS: dict[str, str] = {
    "memory": "memory://",
    "redis": "fixture:redis_url",
    "cluster": "fixture:redis_cluster_url",
}
#: Generous: the contract is about answers, not latency (the machine may be busy).
OPTIONS = ConnectionOptions(timeout=2.0, max_connections=8, pool_timeout=2.0)


@pytest.fixture(params=[(b, f) for b in BACKENDS for f in ("async", "sync")], ids=str)
async def face(request: pytest.FixtureRequest, unique_namespace: str) -> AsyncIterator[Face]:
    backend, which = request.param
    source = BACKENDS[backend]
    if source.startswith("fixture:"):
        source = request.getfixturevalue(source.removeprefix("fixture:"))
    backends = open_backends(source, OPTIONS)
    yield Face(backends, which == "async", unique_namespace)
    await backends.async_backend.delete_matching(f"{unique_namespace}:*", "\x00")
    await backends.aclose()
    backends.close()
