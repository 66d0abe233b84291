"""Fixtures of the command-line tests.

Every test runs the CLI in-process (``freshcache.cli.main``) against the suite's real Redis
(``redis_url``) or Redis Cluster (``redis_cluster_url``), with its keys under
``unique_namespace``, deleted by name afterwards: never a flush.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> int:
    """The width of a pipe or a small terminal: Rich reads COLUMNS when a console is made."""
    monkeypatch.setenv("COLUMNS", "80")
    return 80


@pytest.fixture
def redis_client(redis_url: str, unique_namespace: str) -> Iterator[redis.Redis]:
    """A plain client on the suite's Redis; deletes the test namespace's keys afterwards."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        leftovers = list(client.scan_iter(match=f"{unique_namespace}:*", count=500))
        if leftovers:
            client.delete(*leftovers)
        client.close()
